/* Loaded with LD_PRELOAD into the real binary: fsync and fdatasync of a file whose path contains
 * $FAILING_FSYNC_PATH fail with EIO while the file $FAILING_FSYNC_FLAG exists, as a disk that
 * loses a write reports it. Every other call goes to libc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failing(int fd) {
    const char *flag = getenv("FAILING_FSYNC_FLAG");
    const char *needle = getenv("FAILING_FSYNC_PATH");
    if (!flag || !needle || access(flag, F_OK) != 0) {
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
    static int (*real)(int);
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    if (!real) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    if (!real) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    return real(fd);
}
