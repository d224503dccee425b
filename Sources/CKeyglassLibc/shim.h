// What Swift's Glibc module leaves out: malloc_trim, to give freed memory back to the system.
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
