/*
 * registry.c — mapping and locking the table of System V queues (see registry.h).
 *
 * The file is created with mode 0666 whatever the umask, because every user who may use a
 * queue must be able to look its id up; permission to use a queue is then checked against
 * the slot's msg_perm, as the kernel does, and enforced a second time by the mailbox file's
 * own mode. A new file is sized and formatted under the lock; a process that finds it too
 * short waits for the lock and looks again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"

#define REGISTRY_FILE  "postbox-sysv.registry"
#define REGISTRY_MAGIC "PBXSYSV"

static pthread_mutex_t map_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct sysv_registry *reg;
static int reg_fd = -1;

/* LOCKING. The registry lock is a POSIX record lock (fcntl F_SETLKW) on the whole file. Such a
 * lock belongs to the process, not to the open file description: a child made by fork() does
 * not inherit it, and the kernel drops it when the holder dies, whatever other process still
 * has the file open. (A flock() lock would belong to the description, which a child shares, so
 * a holder killed while a forked child lives would leave the lock taken until the child
 * exits.) A record lock is shared by the threads of a process, so map_mutex keeps two threads
 * from both believing they hold it. The catch of record locks — closing any descriptor of the
 * file drops them — does not bite: only this file opens it, once per process. */
static int file_lock(int fd, short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    while (fcntl(fd, type == F_UNLCK ? F_SETLK : F_SETLKW, &fl) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

const char *sysv_dir(void)
{
    const char *d = getenv("POSTBOX_DIR");
    return d && *d ? d : "/dev/shm";
}

static int open_and_map(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/" REGISTRY_FILE, sysv_dir());
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0)
        return -errno;
    int err = file_lock(fd, F_WRLCK);
    if (err)
        goto fail;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        err = -errno;
        goto fail;
    }
    if (st.st_size == 0) {
        /* Ours to format: the umask must not narrow who can look ids up. */
        if (fchmod(fd, 0666) < 0 || ftruncate(fd, sizeof(struct sysv_registry)) < 0) {
            err = -errno;
            goto fail;
        }
    } else if (st.st_size != sizeof(struct sysv_registry)) {
        err = -EBADMSG;
        goto fail;
    }
    void *p = mmap(NULL, sizeof(struct sysv_registry), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        err = -errno;
        goto fail;
    }
    struct sysv_registry *r = p;
    if (st.st_size == 0) {
        r->version = 1;
        r->nslots = SYSV_SLOTS;
        memcpy(r->magic, REGISTRY_MAGIC, sizeof(REGISTRY_MAGIC));
    } else if (memcmp(r->magic, REGISTRY_MAGIC, sizeof(REGISTRY_MAGIC)) != 0 || r->version != 1 ||
               r->nslots != SYSV_SLOTS) {
        munmap(p, sizeof(struct sysv_registry));
        err = -EBADMSG;
        goto fail;
    }
    file_lock(fd, F_UNLCK);
    reg_fd = fd;
    __atomic_store_n(&reg, r, __ATOMIC_RELEASE);
    return 0;
fail:
    close(fd);
    return err;
}

struct sysv_registry *sysv_registry(void)
{
    struct sysv_registry *r = __atomic_load_n(&reg, __ATOMIC_ACQUIRE);
    if (r)
        return r;
    pthread_mutex_lock(&map_mutex);
    int err = reg ? 0 : open_and_map();
    pthread_mutex_unlock(&map_mutex);
    if (err) {
        errno = -err;
        return NULL;
    }
    return reg;
}

int sysv_registry_lock(void)
{
    if (!sysv_registry())
        return -errno;
    pthread_mutex_lock(&map_mutex); /* see LOCKING above */
    int err = file_lock(reg_fd, F_WRLCK);
    if (err)
        pthread_mutex_unlock(&map_mutex);
    return err;
}

void sysv_registry_unlock(void)
{
    file_lock(reg_fd, F_UNLCK);
    pthread_mutex_unlock(&map_mutex);
}

void sysv_mailbox_name(const struct sysv_slot *s, int id, char name[SYSV_NAME_MAX])
{
    if (s->key == 0) /* IPC_PRIVATE */
        snprintf(name, SYSV_NAME_MAX, "sysv.private.%d", id);
    else
        snprintf(name, SYSV_NAME_MAX, "sysv.0x%08x", (unsigned) s->key);
}

void sysv_registry_after_fork(void)
{
    pthread_mutex_init(&map_mutex, NULL);
}
