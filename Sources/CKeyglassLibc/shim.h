// What Swift's Glibc module leaves out: malloc_trim, to give freed memory back to the system.
#include <malloc.h>
