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
#include <time.h>
#include <unistd.h>

#include "registry.h"

#define REGISTRY_MAGIC "PBXSYSV"

/* The inode number of the initial IPC namespace's /proc/self/ns/ipc (the kernel's
 * PROC_IPC_INIT_INO). Its queues keep the names without a namespace. */
#define SYSV_INIT_IPC_NS 0xEFFFFFFFul

static pthread_mutex_t map_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct sysv_registry *reg; /* the address, fixed once mapped */
static int reg_fd = -1;           /* -1: zeros are mapped (no file) */
static unsigned long reg_ns;      /* the namespace the mapping belongs to (names read it) */
static int drop_pending;          /* a slot was freed under the lock (sysv_registry_freed) */

/* LOCKING. The registry lock is a POSIX record lock (fcntl F_SETLKW) on the whole file. Such a
 * lock belongs to the process, not to the open file description: a child made by fork() does
 * not inherit it, and the kernel drops it when the holder dies, whatever other process still
 * has the file open. (A flock() lock would belong to the description, which a child shares, so
 * a holder killed while a forked child lives would leave the lock taken until the child
 * exits.) A record lock is shared by the threads of a process, so map_mutex keeps two threads
 * from both believing they hold it. The catch of record locks — closing any descriptor of the
 * file drops them — does not bite: only this file opens it, once per process and file, and
 * closes a descriptor only once it has let the lock go.
 *
 * NAMESPACES AND REMOVAL. Which file a process uses depends on its IPC namespace, which
 * unshare(CLONE_NEWIPC), setns() or clone(CLONE_NEWIPC) change without an exec (and, for
 * clone, without the fork handlers); and the file goes when its last queue goes. So the
 * mapping lives at one address for the life of the process and is replaced in place
 * (MAP_FIXED) by the right file, or by zeros when there is none: a thread reading a slot
 * meanwhile reads one registry or the other, never unmapped memory. registry_check() looks
 * whenever a call could tell (msgget, msgctl, an id not found).
 *
 * The file is unlinked only under its lock, by the process that freed the last slot, and
 * before it lets the lock go. A process may have opened the file just before, and be waiting
 * for the lock to create a queue in it: so whoever takes the lock checks that the file it
 * holds is still linked (fstat st_nlink), and if not lets it go and opens the path again,
 * where it finds no file or the next one. No queue is ever made in an unlinked file. */
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

/* The inode of this process's IPC namespace, or the initial one's when /proc cannot say. */
static unsigned long current_ns(void)
{
    struct stat st;
    if (stat("/proc/self/ns/ipc", &st) != 0)
        return SYSV_INIT_IPC_NS;
    return (unsigned long) st.st_ino;
}

/* "" in the initial namespace, else "ns<N>.": part of the file's and the mailboxes' names. */
static void ns_tag(unsigned long ns, char tag[32])
{
    if (ns == SYSV_INIT_IPC_NS || ns == 0)
        tag[0] = 0;
    else
        snprintf(tag, 32, "ns%lu.", ns);
}

static void registry_path(unsigned long ns, char path[4096])
{
    char tag[32];
    ns_tag(ns, tag);
    snprintf(path, 4096, "%s/postbox-sysv.%sregistry", sysv_dir(), tag);
}

/* Map fd's file (or zeros, fd -1) at reg, or anywhere the first time. 0 or -errno. */
static int map_at_reg(int fd)
{
    int flags = fd >= 0 ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS;
    int prot = fd >= 0 ? PROT_READ | PROT_WRITE : PROT_READ;
    void *p = mmap(reg, sizeof(struct sysv_registry), prot, flags | (reg ? MAP_FIXED : 0), fd, 0);
    if (p == MAP_FAILED) {
        int err = -errno;
        /* A failed MAP_FIXED may have unmapped the range: put zeros back, so that readers of
         * reg never fault. */
        if (reg && mmap(reg, sizeof(struct sysv_registry), PROT_READ,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
            abort();
        return err;
    }
    if (!reg)
        __atomic_store_n(&reg, (struct sysv_registry *) p, __ATOMIC_RELEASE);
    return 0;
}

/* Open (or create) the file of namespace ns and map it at reg. 0 with *fdp set, -ENOENT when
 * there is none and create is 0, -EAGAIN when it was unlinked under us (look again). */
static int open_and_map(unsigned long ns, int create, int *fdp)
{
    char path[4096];
    registry_path(ns, path);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0666);
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
    if (st.st_nlink == 0) {
        err = -EAGAIN; /* removed with its last queue after our open */
        goto fail;
    }
    if (st.st_size == 0) {
        /* Ours to format: the umask must not narrow who can look ids up. */
        if (fchmod(fd, 0666) < 0 || ftruncate(fd, sizeof(struct sysv_registry)) < 0) {
            err = -errno;
            goto fail;
        }
    } else {
        /* Checked before the mapping replaces the one readers use. */
        struct {
            char magic[8];
            uint32_t version, nslots;
        } head;
        _Static_assert(sizeof(head) == offsetof(struct sysv_registry, used), "registry head");
        if (st.st_size != sizeof(struct sysv_registry) ||
            pread(fd, &head, sizeof(head), 0) != (ssize_t) sizeof(head) ||
            memcmp(head.magic, REGISTRY_MAGIC, sizeof(REGISTRY_MAGIC)) != 0 || head.version != 1 ||
            head.nslots != SYSV_SLOTS) {
            err = -EBADMSG;
            goto fail;
        }
    }
    err = map_at_reg(fd);
    if (err)
        goto fail;
    if (st.st_size == 0) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        reg->seq_base = (uint32_t) ((unsigned long) t.tv_nsec ^ (unsigned long) getpid() * 40503u);
        reg->version = 1;
        reg->nslots = SYSV_SLOTS;
        memcpy(reg->magic, REGISTRY_MAGIC, sizeof(REGISTRY_MAGIC));
    }
    file_lock(fd, F_UNLCK);
    *fdp = fd;
    return 0;
fail:
    close(fd);
    return err;
}

/* With map_mutex held: make reg the registry of this process's namespace as it is now (the
 * file, made if create is set, or zeros when there is none). 0 or -errno. */
static int registry_check(int create)
{
    unsigned long ns = current_ns();
    if (reg && ns == reg_ns) {
        struct stat st;
        char path[4096];
        if (reg_fd >= 0 && fstat(reg_fd, &st) == 0 && st.st_nlink > 0)
            return 0;
        if (reg_fd < 0 && !create) {
            registry_path(ns, path);
            if (access(path, F_OK) != 0 && errno == ENOENT)
                return 0; /* still no file */
        }
    }
    int had = reg != NULL, fd = -1, err;
    while ((err = open_and_map(ns, create, &fd)) == -EAGAIN)
        ;
    if (err == -ENOENT && !create)
        err = map_at_reg(-1);
    if (err)
        return err;
    if (reg_fd >= 0)
        close(reg_fd);
    reg_fd = fd;
    __atomic_store_n(&reg_ns, ns, __ATOMIC_RELAXED);
    if (had)
        sysv_registry_switched();
    return 0;
}

struct sysv_registry *sysv_registry(void)
{
    struct sysv_registry *r = __atomic_load_n(&reg, __ATOMIC_ACQUIRE);
    if (r)
        return r;
    pthread_mutex_lock(&map_mutex);
    int err = reg ? 0 : registry_check(0);
    pthread_mutex_unlock(&map_mutex);
    if (err) {
        errno = -err;
        return NULL;
    }
    return reg;
}

int sysv_registry_refresh(void)
{
    pthread_mutex_lock(&map_mutex);
    int err = registry_check(0);
    pthread_mutex_unlock(&map_mutex);
    return err;
}

int sysv_registry_lock(int create)
{
    pthread_mutex_lock(&map_mutex); /* see LOCKING above */
    for (;;) {
        int err = registry_check(create);
        if (!err && reg_fd < 0)
            err = -ENOENT;
        if (!err)
            err = file_lock(reg_fd, F_WRLCK);
        if (err) {
            pthread_mutex_unlock(&map_mutex);
            return err;
        }
        struct stat st;
        if (fstat(reg_fd, &st) == 0 && st.st_nlink > 0) {
            drop_pending = 0;
            return 0;
        }
        file_lock(reg_fd, F_UNLCK); /* unlinked while we waited: look again */
    }
}

void sysv_registry_freed(void)
{
    drop_pending = 1;
}

/* With the lock held: does no slot hold a queue, made or being made? */
static int registry_empty(void)
{
    uint32_t used = sysv_used(reg);
    for (uint32_t i = 0; i < used; i++) {
        uint32_t state = sysv_state_of(__atomic_load_n(&reg->slot[i].live, __ATOMIC_ACQUIRE));
        if (state == SYSV_LIVE || state == SYSV_CREATING)
            return 0;
    }
    return 1;
}

void sysv_registry_unlock(void)
{
    if (drop_pending && registry_empty()) {
        /* The last queue went: unlink the file before the lock goes (NAMESPACES AND REMOVAL
         * above), if the path still names it. */
        char path[4096];
        struct stat at, own;
        registry_path(reg_ns, path);
        if (fstat(reg_fd, &own) == 0 && lstat(path, &at) == 0 && at.st_ino == own.st_ino &&
            at.st_dev == own.st_dev && unlink(path) == 0) {
            file_lock(reg_fd, F_UNLCK);
            if (map_at_reg(-1) == 0) {
                close(reg_fd);
                reg_fd = -1;
            }
            drop_pending = 0;
            pthread_mutex_unlock(&map_mutex);
            return;
        }
    }
    drop_pending = 0;
    file_lock(reg_fd, F_UNLCK);
    pthread_mutex_unlock(&map_mutex);
}

void sysv_mailbox_name(const struct sysv_slot *s, int id, char name[SYSV_NAME_MAX])
{
    char tag[32];
    ns_tag(__atomic_load_n(&reg_ns, __ATOMIC_RELAXED), tag);
    if (s->key == 0) /* IPC_PRIVATE */
        snprintf(name, SYSV_NAME_MAX, "sysv.%sprivate.%d", tag, id);
    else
        snprintf(name, SYSV_NAME_MAX, "sysv.%s0x%08x", tag, (unsigned) s->key);
}

void sysv_registry_after_fork(void)
{
    pthread_mutex_init(&map_mutex, NULL);
    drop_pending = 0;
}
