/* Loaded with LD_PRELOAD into the real binary: while the file $FAILING_FSYNC_FLAG exists, the
 * calls named in $FAILING_FSYNC_CALLS ("fsync", "fdatasync" or both, comma-separated) fail with
 * EIO for files whose path contains $FAILING_FSYNC_PATH, as a disk that loses a write reports
 * it. Every other call goes to libc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

/* Resolved once, before any thread of the program runs. */
__attribute__((constructor)) static void resolve(void) {
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
}

static int failing(const char *call, int fd) {
    const char *flag = getenv("FAILING_FSYNC_FLAG");
    const char *needle = getenv("FAILING_FSYNC_PATH");
    const char *calls = getenv("FAILING_FSYNC_CALLS");
    if (!flag || !needle || !calls || access(flag, F_OK) != 0) {
        return 0;
    }
    /* Whole names only: "fsync" is not a part of "fdatasync". */
    size_t len = strlen(call);
    const char *at = calls;
    int named = 0;
    while ((at = strstr(at, call)) != NULL) {
        if ((at == calls || at[-1] == ',') && (at[len] == '\0' || at[len] == ',')) {
            named = 1;
            break;
        }
        at += len;
    }
    if (!named) {
        return 0;
    }
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) {
        return 0;
    }
    path[n] = '\0';
    return strstr(path, needle) != NULL;
}

int fsync(int fd) {
    if (failing("fsync", fd)) {
        errno = EIO;
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    if (failing("fdatasync", fd)) {
        errno = EIO;
        return -1;
    }
    return real_fdatasync(fd);
}
