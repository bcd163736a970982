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
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"

#define REGISTRY_FILE  "postbox-sysv.registry"
#define REGISTRY_MAGIC "PBXSYSV"

static pthread_mutex_t map_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct sysv_registry *reg;
static int reg_fd = -1;
static pid_t reg_pid; /* the process reg_fd was opened in */

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
    int err = 0;
    if (flock(fd, LOCK_EX) < 0) {
        err = -errno;
        goto fail;
    }
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
    flock(fd, LOCK_UN);
    reg_fd = fd;
    reg_pid = getpid();
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
    /* flock() locks belong to the open file description, which threads share: the mutex
     * keeps two threads of this process from both believing they hold the lock. */
    pthread_mutex_lock(&map_mutex);
    if (reg_pid != getpid()) {
        /* A child shares its parent's open file, and with it the parent's flock(): it needs
         * a description of its own. */
        char path[4096];
        snprintf(path, sizeof(path), "%s/" REGISTRY_FILE, sysv_dir());
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            int err = -errno;
            pthread_mutex_unlock(&map_mutex);
            return err;
        }
        close(reg_fd);
        reg_fd = fd;
        reg_pid = getpid();
    }
    while (flock(reg_fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            int err = -errno;
            pthread_mutex_unlock(&map_mutex);
            return err;
        }
    }
    return 0;
}

void sysv_registry_unlock(void)
{
    flock(reg_fd, LOCK_UN);
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
