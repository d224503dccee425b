/* See include/crashvfs.h for what this simulates and why. */
#include "crashvfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One pending operation on a file: a write (data != NULL) or a truncate (data == NULL). */
typedef struct Op {
    sqlite3_int64 offset;  /* write offset, or the size truncated to */
    int length;
    unsigned char *data;
    struct Op *next;
} Op;

/* What one path holds, shared by every handle open on it (as the page cache is). */
typedef struct FileState {
    char *path;
    unsigned char *shadow;  /* what the program sees */
    sqlite3_int64 size;
    sqlite3_int64 capacity;
    Op *head, *tail;        /* writes since the last sync, in order */
    int pending;
    int refs;
    struct FileState *next;
} FileState;

typedef struct CrashFile {
    sqlite3_file base;
    FileState *state;      /* NULL for files opened without a name */
    sqlite3_file *real;    /* the real VFS's handle: locks and shared memory */
} CrashFile;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static FileState *files = NULL;
static int powerOff = 0;
static unsigned long long syncCount = 0;
static sqlite3_vfs *realVfs = NULL;
static sqlite3_vfs crashVfs;
static sqlite3_io_methods crashMethods;

static int grow(FileState *f, sqlite3_int64 need) {
    if (need <= f->capacity) return 1;
    sqlite3_int64 c = f->capacity ? f->capacity : 65536;
    while (c < need) c *= 2;
    unsigned char *p = realloc(f->shadow, (size_t)c);
    if (!p) return 0;
    memset(p + f->capacity, 0, (size_t)(c - f->capacity));
    f->shadow = p;
    f->capacity = c;
    return 1;
}

static FileState *stateFor(const char *path) {
    for (FileState *f = files; f; f = f->next)
        if (strcmp(f->path, path) == 0) return f;
    FileState *f = calloc(1, sizeof(FileState));
    if (!f) return NULL;
    f->path = strdup(path);
    /* The first open reads what is on disk: after that, the shadow is the program's view. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_size > 0 && grow(f, st.st_size)) {
            sqlite3_int64 done = 0;
            while (done < st.st_size) {
                ssize_t n = pread(fd, f->shadow + done, (size_t)(st.st_size - done), done);
                if (n <= 0) break;
                done += n;
            }
            f->size = done;
        }
        close(fd);
    }
    f->next = files;
    files = f;
    return f;
}

static void freeOps(FileState *f) {
    Op *o = f->head;
    while (o) {
        Op *next = o->next;
        free(o->data);
        free(o);
        o = next;
    }
    f->head = f->tail = NULL;
    f->pending = 0;
}

static void dropState(FileState *f) {
    FileState **p = &files;
    while (*p && *p != f) p = &(*p)->next;
    if (*p) *p = f->next;
    freeOps(f);
    free(f->shadow);
    free(f->path);
    free(f);
}

/* Applies one operation (or, with `partial` > 0, the first `partial` bytes of a write) to disk. */
static int applyToDisk(const char *path, const Op *o, int partial) {
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return 0;
    int ok = 1;
    if (o->data) {
        int length = partial > 0 ? partial : o->length;
        int done = 0;
        while (done < length) {
            ssize_t n = pwrite(fd, o->data + done, (size_t)(length - done), o->offset + done);
            if (n <= 0) { ok = 0; break; }
            done += (int)n;
        }
    } else {
        ok = ftruncate(fd, o->offset) == 0;
    }
    close(fd);
    return ok;
}

static void append(FileState *f, sqlite3_int64 offset, const void *data, int length) {
    Op *o = calloc(1, sizeof(Op));
    o->offset = offset;
    o->length = length;
    if (data) {
        o->data = malloc((size_t)length);
        memcpy(o->data, data, (size_t)length);
    }
    if (f->tail) f->tail->next = o; else f->head = o;
    f->tail = o;
    f->pending++;
}

/* ---- io methods ---- */

static int xClose(sqlite3_file *file) {
    CrashFile *c = (CrashFile *)file;
    pthread_mutex_lock(&lock);
    if (c->state && --c->state->refs == 0 && c->state->pending == 0) dropState(c->state);
    pthread_mutex_unlock(&lock);
    int rc = c->real->pMethods ? c->real->pMethods->xClose(c->real) : SQLITE_OK;
    free(c->real);
    return rc;
}

static int xRead(sqlite3_file *file, void *buf, int amount, sqlite3_int64 offset) {
    CrashFile *c = (CrashFile *)file;
    if (!c->state) return c->real->pMethods->xRead(c->real, buf, amount, offset);
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    if (powerOff) {
        rc = SQLITE_IOERR_READ;
    } else {
        FileState *f = c->state;
        sqlite3_int64 have = f->size - offset;
        if (have >= amount) {
            memcpy(buf, f->shadow + offset, (size_t)amount);
        } else {
            memset(buf, 0, (size_t)amount);
            if (have > 0) memcpy(buf, f->shadow + offset, (size_t)have);
            rc = SQLITE_IOERR_SHORT_READ;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static int xWrite(sqlite3_file *file, const void *buf, int amount, sqlite3_int64 offset) {
    CrashFile *c = (CrashFile *)file;
    if (!c->state) return c->real->pMethods->xWrite(c->real, buf, amount, offset);
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    FileState *f = c->state;
    if (powerOff) {
        rc = SQLITE_IOERR_WRITE;
    } else if (!grow(f, offset + amount)) {
        rc = SQLITE_IOERR_NOMEM;
    } else {
        memcpy(f->shadow + offset, buf, (size_t)amount);
        if (offset + amount > f->size) f->size = offset + amount;
        append(f, offset, buf, amount);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static int xTruncate(sqlite3_file *file, sqlite3_int64 size) {
    CrashFile *c = (CrashFile *)file;
    if (!c->state) return c->real->pMethods->xTruncate(c->real, size);
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    FileState *f = c->state;
    if (powerOff) {
        rc = SQLITE_IOERR_TRUNCATE;
    } else {
        if (size < f->size) memset(f->shadow + size, 0, (size_t)(f->size - size));
        else if (!grow(f, size)) rc = SQLITE_IOERR_NOMEM;
        if (rc == SQLITE_OK) {
            f->size = size;
            append(f, size, NULL, 0);
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

/* A sync makes every write to this file so far durable: it reaches the real file. */
static int xSync(sqlite3_file *file, int flags) {
    (void)flags;
    CrashFile *c = (CrashFile *)file;
    if (!c->state) return c->real->pMethods->xSync(c->real, flags);
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    if (powerOff) {
        rc = SQLITE_IOERR_FSYNC;
    } else {
        FileState *f = c->state;
        for (Op *o = f->head; o; o = o->next)
            if (!applyToDisk(f->path, o, 0)) { rc = SQLITE_IOERR_FSYNC; break; }
        if (rc == SQLITE_OK) {
            freeOps(f);
            syncCount++;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static int xFileSize(sqlite3_file *file, sqlite3_int64 *size) {
    CrashFile *c = (CrashFile *)file;
    if (!c->state) return c->real->pMethods->xFileSize(c->real, size);
    pthread_mutex_lock(&lock);
    int rc = powerOff ? SQLITE_IOERR_FSTAT : SQLITE_OK;
    *size = c->state->size;
    pthread_mutex_unlock(&lock);
    return rc;
}

static int xLock(sqlite3_file *file, int level) {
    CrashFile *c = (CrashFile *)file;
    if (powerOff) return SQLITE_IOERR_LOCK;
    return c->real->pMethods->xLock(c->real, level);
}

static int xUnlock(sqlite3_file *file, int level) {
    CrashFile *c = (CrashFile *)file;
    return c->real->pMethods->xUnlock(c->real, level);
}

static int xCheckReservedLock(sqlite3_file *file, int *out) {
    CrashFile *c = (CrashFile *)file;
    return c->real->pMethods->xCheckReservedLock(c->real, out);
}

/* Only the lock state is passed on: a size hint or chunk size would change the real file's size
 * behind the simulation's back; "not found" leaves SQLite's defaults. */
static int xFileControl(sqlite3_file *file, int op, void *arg) {
    CrashFile *c = (CrashFile *)file;
    if (op == SQLITE_FCNTL_LOCKSTATE) return c->real->pMethods->xFileControl(c->real, op, arg);
    return SQLITE_NOTFOUND;
}

static int xSectorSize(sqlite3_file *file) { (void)file; return 512; }

/* No atomic or power-safe writes: SQLite must not rely on anything the simulation does not keep. */
static int xDeviceCharacteristics(sqlite3_file *file) { (void)file; return 0; }

static int xShmMap(sqlite3_file *file, int region, int size, int extend, void volatile **out) {
    CrashFile *c = (CrashFile *)file;
    if (powerOff) return SQLITE_IOERR_SHMMAP;
    return c->real->pMethods->xShmMap(c->real, region, size, extend, out);
}

static int xShmLock(sqlite3_file *file, int offset, int n, int flags) {
    CrashFile *c = (CrashFile *)file;
    return c->real->pMethods->xShmLock(c->real, offset, n, flags);
}

static void xShmBarrier(sqlite3_file *file) {
    CrashFile *c = (CrashFile *)file;
    c->real->pMethods->xShmBarrier(c->real);
}

static int xShmUnmap(sqlite3_file *file, int deleteFlag) {
    CrashFile *c = (CrashFile *)file;
    return c->real->pMethods->xShmUnmap(c->real, deleteFlag);
}

/* ---- vfs methods ---- */

static int vOpen(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *outFlags) {
    (void)vfs;
    CrashFile *c = (CrashFile *)file;
    memset(c, 0, sizeof(*c));
    c->real = calloc(1, (size_t)realVfs->szOsFile);
    if (!c->real) return SQLITE_NOMEM;
    int rc = realVfs->xOpen(realVfs, name, c->real, flags, outFlags);
    if (rc != SQLITE_OK) {
        free(c->real);
        c->real = NULL;
        return rc;
    }
    pthread_mutex_lock(&lock);
    if (name && !powerOff) {
        c->state = stateFor(name);
        if (c->state) c->state->refs++;
    }
    int off = powerOff;
    pthread_mutex_unlock(&lock);
    if (off) {
        c->real->pMethods->xClose(c->real);
        free(c->real);
        c->real = NULL;
        return SQLITE_CANTOPEN;
    }
    c->base.pMethods = &crashMethods;
    return SQLITE_OK;
}

static int vDelete(sqlite3_vfs *vfs, const char *name, int syncDir) {
    (void)vfs;
    pthread_mutex_lock(&lock);
    if (powerOff) {
        pthread_mutex_unlock(&lock);
        return SQLITE_IOERR_DELETE;
    }
    for (FileState *f = files; f; f = f->next) {
        if (strcmp(f->path, name) == 0) {
            freeOps(f);
            f->size = 0;
            if (f->refs == 0) dropState(f);
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return realVfs->xDelete(realVfs, name, syncDir);
}

static int vAccess(sqlite3_vfs *vfs, const char *name, int flags, int *out) { (void)vfs; return realVfs->xAccess(realVfs, name, flags, out); }
static int vFullPathname(sqlite3_vfs *vfs, const char *name, int n, char *out) { (void)vfs; return realVfs->xFullPathname(realVfs, name, n, out); }
static void *vDlOpen(sqlite3_vfs *vfs, const char *name) { (void)vfs; return realVfs->xDlOpen(realVfs, name); }
static void vDlError(sqlite3_vfs *vfs, int n, char *out) { (void)vfs; realVfs->xDlError(realVfs, n, out); }
static void (*vDlSym(sqlite3_vfs *vfs, void *h, const char *sym))(void) { (void)vfs; return realVfs->xDlSym(realVfs, h, sym); }
static void vDlClose(sqlite3_vfs *vfs, void *h) { (void)vfs; realVfs->xDlClose(realVfs, h); }
static int vRandomness(sqlite3_vfs *vfs, int n, char *out) { (void)vfs; return realVfs->xRandomness(realVfs, n, out); }
static int vSleep(sqlite3_vfs *vfs, int us) { (void)vfs; return realVfs->xSleep(realVfs, us); }
static int vCurrentTime(sqlite3_vfs *vfs, double *out) { (void)vfs; return realVfs->xCurrentTime(realVfs, out); }
static int vGetLastError(sqlite3_vfs *vfs, int n, char *out) { (void)vfs; return realVfs->xGetLastError ? realVfs->xGetLastError(realVfs, n, out) : 0; }
static int vCurrentTimeInt64(sqlite3_vfs *vfs, sqlite3_int64 *out) { (void)vfs; return realVfs->xCurrentTimeInt64(realVfs, out); }

int keyglass_crashvfs_register(void) {
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    if (!realVfs) {
        realVfs = sqlite3_vfs_find(NULL);
        crashMethods = (sqlite3_io_methods){
            .iVersion = 2,  /* shared memory, but no mmap (xFetch) that would bypass the shadow */
            .xClose = xClose, .xRead = xRead, .xWrite = xWrite, .xTruncate = xTruncate, .xSync = xSync,
            .xFileSize = xFileSize, .xLock = xLock, .xUnlock = xUnlock, .xCheckReservedLock = xCheckReservedLock,
            .xFileControl = xFileControl, .xSectorSize = xSectorSize, .xDeviceCharacteristics = xDeviceCharacteristics,
            .xShmMap = xShmMap, .xShmLock = xShmLock, .xShmBarrier = xShmBarrier, .xShmUnmap = xShmUnmap,
        };
        crashVfs = (sqlite3_vfs){
            .iVersion = 2, .szOsFile = (int)sizeof(CrashFile), .mxPathname = realVfs->mxPathname,
            .zName = "keyglass-crash",
            .xOpen = vOpen, .xDelete = vDelete, .xAccess = vAccess, .xFullPathname = vFullPathname,
            .xDlOpen = vDlOpen, .xDlError = vDlError, .xDlSym = vDlSym, .xDlClose = vDlClose,
            .xRandomness = vRandomness, .xSleep = vSleep, .xCurrentTime = vCurrentTime,
            .xGetLastError = vGetLastError, .xCurrentTimeInt64 = vCurrentTimeInt64,
        };
        rc = sqlite3_vfs_register(&crashVfs, 0);
        if (rc != SQLITE_OK) realVfs = NULL;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

/* A small generator so torn cuts reproduce from their seed. */
static unsigned long long nextRandom(unsigned long long *s) {
    *s += 0x9E3779B97F4A7C15ULL;
    unsigned long long z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int keyglass_crashvfs_power_cut(int torn, unsigned long long seed) {
    pthread_mutex_lock(&lock);
    int lost = 0;
    powerOff = 1;
    for (FileState *f = files; f; f = f->next) {
        lost += f->pending;
        if (torn) {
            for (Op *o = f->head; o; o = o->next) {
                unsigned long long r = nextRandom(&seed);
                if (r % 3 == 0) continue;  /* this write never reached the disk */
                int partial = 0;
                if (o->data && o->length > 512 && r % 3 == 1) {
                    /* Torn: only the first sectors of this write made it. */
                    int sectors = o->length / 512;
                    partial = (int)(1 + nextRandom(&seed) % (unsigned long long)sectors) * 512;
                    if (partial >= o->length) partial = 0;
                }
                applyToDisk(f->path, o, partial);
            }
        }
        freeOps(f);
    }
    pthread_mutex_unlock(&lock);
    return lost;
}

void keyglass_crashvfs_reset(void) {
    pthread_mutex_lock(&lock);
    /* Handles still open keep pointers to their state: only orphaned states are freed; the rest
     * are detached (never matched by path again) and freed when their last handle closes. */
    FileState *f = files;
    files = NULL;
    while (f) {
        FileState *next = f->next;
        freeOps(f);
        if (f->refs == 0) {
            free(f->shadow);
            free(f->path);
            free(f);
        } else {
            f->next = NULL;
        }
        f = next;
    }
    powerOff = 0;
    pthread_mutex_unlock(&lock);
}

unsigned long long keyglass_crashvfs_syncs(void) {
    pthread_mutex_lock(&lock);
    unsigned long long n = syncCount;
    pthread_mutex_unlock(&lock);
    return n;
}
