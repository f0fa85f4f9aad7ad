/* The C baseline of `unixipc bench`: what this machine can do with no Python in the way.
 *
 * Usage: baseline MODE SIZE SECONDS DRIVER_CPU PEER_CPU
 *   MODE   spin     round trips through shared memory, both sides spinning
 *          futex    round trips through shared memory, both sides sleeping in futex(2)
 *          hybrid   round trips through shared memory, spinning briefly, then futex(2)
 *          pipe     round trips through two pipes
 *          ring     one-way streaming through a shared-memory ring (spin, then futex)
 *          memcpy   one process copying SIZE-byte blocks (the copy the others pay twice)
 *   SIZE   message size in bytes
 *   SECONDS how long to measure (after a warm-up of a tenth of that)
 *   CPU    the CPU to pin each process to, or -1 to leave it unpinned
 *
 * The first process (the driver) forks the second (the peer), measures, and prints
 * one JSON object with the same fields as the Python worker of unixipc.bench.
 * Messages whose first byte is 1 end a run, as in the Python protocol.
 *
 * System calls: mmap (MAP_SHARED | MAP_ANONYMOUS), fork, waitpid, prctl
 * (PR_SET_PDEATHSIG), sched_setaffinity, futex (FUTEX_WAIT, FUTEX_WAKE), pipe, read,
 * write, clock_gettime (CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID).
 *
 * Compiled at run time by unixipc.bench with the machine's cc: -O2 -Wall -Wextra.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CACHE_LINE 64
/* A waiter in hybrid mode spins this long before it sleeps: about what a sleeping
 * core takes to wake up on this kind of machine. */
#define SPIN_BUDGET_NS 50000
#define RING_MIN_CAPACITY (2u << 20)

enum wait_mode { WAIT_SPIN, WAIT_FUTEX, WAIT_HYBRID };

/* A 32-bit word that one side changes and the other waits on, with the flag that
 * tells the changer whether the waiter may be asleep. Each on its own cache line. */
struct signal_word {
    _Alignas(CACHE_LINE) _Atomic uint32_t value;
    _Atomic uint32_t sleeping;
};

struct shared {
    struct signal_word forth; /* driver -> peer: message count, or the ring's head */
    struct signal_word back;  /* peer -> driver: reply count, or the ring's tail */
    _Alignas(CACHE_LINE) _Atomic uint32_t stop;
    _Atomic uint64_t peer_cpu_ns;
    _Atomic uint64_t peer_messages;
    _Alignas(CACHE_LINE) unsigned char data[]; /* message buffers or ring slots */
};

static void die(const char *what)
{
    fprintf(stderr, "baseline: %s: %s\n", what, strerror(errno));
    exit(2);
}

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec now;
    clock_gettime(clock, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
static uint64_t cpu_ns(void) { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("sched_setaffinity");
}

/* Shared (not private) futexes: the word lives in memory shared by two processes. */
static void futex_wait(_Atomic uint32_t *word, uint32_t expected)
{
    if (syscall(SYS_futex, word, FUTEX_WAIT, expected, NULL, NULL, 0) != 0 && errno != EAGAIN &&
        errno != EINTR)
        die("futex wait");
}

static void futex_wake(_Atomic uint32_t *word)
{
    if (syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0) < 0)
        die("futex wake");
}

/* Wait until `word` differs from `old`; return its new value. */
static uint32_t wait_change(struct signal_word *word, uint32_t old, enum wait_mode mode)
{
    uint32_t seen;
    if (mode != WAIT_FUTEX) {
        uint64_t give_up = mode == WAIT_HYBRID ? now_ns() + SPIN_BUDGET_NS : 0;
        for (unsigned spins = 1;; spins++) {
            seen = atomic_load_explicit(&word->value, memory_order_acquire);
            if (seen != old)
                return seen;
            cpu_relax();
            if (mode == WAIT_HYBRID && spins % 64 == 0 && now_ns() > give_up)
                break;
        }
    }
    for (;;) {
        /* Announce the sleep, then look again: the changer stores the value before it
         * reads the flag (both sequentially consistent), so one of us sees the other. */
        atomic_store(&word->sleeping, 1);
        seen = atomic_load(&word->value);
        if (seen != old)
            break;
        futex_wait(&word->value, old);
        seen = atomic_load(&word->value);
        if (seen != old)
            break;
    }
    atomic_store(&word->sleeping, 0);
    return seen;
}

static void publish(struct signal_word *word, uint32_t value, enum wait_mode mode)
{
    if (mode == WAIT_SPIN) {
        atomic_store_explicit(&word->value, value, memory_order_release);
        return;
    }
    /* Only the waiter clears its flag: a waker that cleared it could consume the flag
     * of the waiter's next sleep and lose that wake-up. */
    atomic_store(&word->value, value);
    if (atomic_load(&word->sleeping))
        futex_wake(&word->value);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

struct samples {
    uint64_t *values;
    size_t count, capacity;
};

static void add_sample(struct samples *s, uint64_t value)
{
    if (s->count == s->capacity) {
        s->capacity = s->capacity ? 2 * s->capacity : 65536;
        s->values = realloc(s->values, s->capacity * sizeof *s->values);
        if (s->values == NULL)
            die("realloc");
    }
    s->values[s->count++] = value;
}

static struct shared *map_shared(size_t data_bytes)
{
    void *memory = mmap(NULL, sizeof(struct shared) + data_bytes, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED)
        die("mmap");
    return memory;
}

/* Fork the peer, pinned to its CPU; it dies with the driver. Returns its pid (0 in it). */
static pid_t start_peer(int cpu)
{
    fflush(stdout);
    pid_t driver = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != driver)
            _exit(3);
        pin(cpu);
    }
    return pid;
}

static void reap_peer(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, 0) < 0)
        die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "baseline: the peer process failed (status %d)\n", status);
        exit(2);
    }
}

static void write_all(int fd, const unsigned char *data, size_t size)
{
    while (size) {
        ssize_t done = write(fd, data, size);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            die("write");
        }
        data += done;
        size -= (size_t)done;
    }
}

static void read_all(int fd, unsigned char *data, size_t size)
{
    while (size) {
        ssize_t done = read(fd, data, size);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            die("read");
        }
        if (done == 0) {
            fprintf(stderr, "baseline: unexpected end of pipe\n");
            exit(2);
        }
        data += done;
        size -= (size_t)done;
    }
}

struct run {
    size_t size;
    double seconds;
    int driver_cpu, peer_cpu;
};

static void print_latency(struct samples *s, uint64_t round_trips, double cpu_seconds)
{
    qsort(s->values, s->count, sizeof *s->values, compare_u64);
    size_t p99 = s->count * 99 / 100;
    if (p99 >= s->count)
        p99 = s->count - 1;
    printf("{\"rtt_median_us\": %.4f, \"rtt_p99_us\": %.4f, \"round_trips\": %llu, "
           "\"messages\": %llu, \"cpu_us_per_message\": %.4f}\n",
           s->values[s->count / 2] / 1e3, s->values[p99] / 1e3, (unsigned long long)s->count,
           (unsigned long long)(2 * round_trips), cpu_seconds * 1e6 / (2.0 * (double)round_trips));
}

static void print_throughput(size_t size, uint64_t messages, double seconds, uint64_t total,
                             double cpu_seconds)
{
    double rate = (double)messages / seconds;
    printf("{\"messages_per_s\": %.1f, \"mb_per_s\": %.3f, \"messages\": %llu, "
           "\"seconds\": %.6f, \"cpu_us_per_message\": %.4f}\n",
           rate, rate * (double)size / 1e6, (unsigned long long)messages, seconds,
           cpu_seconds * 1e6 / (double)total);
}

/* Round trips through shared memory: the driver writes a message and bumps `forth`;
 * the peer copies it out, writes its reply and bumps `back`. */
static void shared_memory_ping_pong(const struct run *run, enum wait_mode mode)
{
    size_t size = run->size;
    struct shared *sh = map_shared(2 * size);
    unsigned char *request = sh->data, *reply = sh->data + size;
    unsigned char *local = calloc(1, size);
    if (local == NULL)
        die("calloc");

    pid_t pid = start_peer(run->peer_cpu);
    if (pid == 0) {
        uint64_t cpu_start = cpu_ns(), count = 0;
        for (uint32_t seen = 0;;) {
            seen = wait_change(&sh->forth, seen, mode);
            memcpy(local, request, size);
            if (local[0] == 1)
                break;
            memcpy(reply, local, size);
            publish(&sh->back, seen, mode);
            count++;
        }
        atomic_store(&sh->peer_cpu_ns, cpu_ns() - cpu_start);
        atomic_store(&sh->peer_messages, count);
        _exit(0);
    }
    pin(run->driver_cpu);

    struct samples samples = {0};
    uint64_t cpu_start = cpu_ns(), start = now_ns();
    uint64_t warm_until = start + (uint64_t)(run->seconds * 1e8);
    uint64_t end = warm_until + (uint64_t)(run->seconds * 1e9);
    uint32_t sequence = 0;
    uint64_t round_trips = 0;
    for (;;) {
        uint64_t before = now_ns();
        memcpy(request, local, size);
        publish(&sh->forth, ++sequence, mode);
        wait_change(&sh->back, sequence - 1, mode);
        memcpy(local, reply, size);
        uint64_t after = now_ns();
        round_trips++;
        if (after >= warm_until)
            add_sample(&samples, after - before);
        if (after >= end)
            break;
    }
    local[0] = 1;
    memcpy(request, local, size);
    publish(&sh->forth, ++sequence, mode);
    double driver_cpu = (cpu_ns() - cpu_start) / 1e9;
    reap_peer(pid);
    print_latency(&samples, round_trips, driver_cpu + atomic_load(&sh->peer_cpu_ns) / 1e9);
}

static void pipe_ping_pong(const struct run *run)
{
    size_t size = run->size;
    int forth[2], back[2];
    if (pipe(forth) != 0 || pipe(back) != 0)
        die("pipe");
    struct shared *sh = map_shared(0);
    unsigned char *message = calloc(1, size);
    if (message == NULL)
        die("calloc");

    pid_t pid = start_peer(run->peer_cpu);
    if (pid == 0) {
        close(forth[1]);
        close(back[0]);
        uint64_t cpu_start = cpu_ns();
        for (;;) {
            read_all(forth[0], message, size);
            if (message[0] == 1)
                break;
            write_all(back[1], message, size);
        }
        atomic_store(&sh->peer_cpu_ns, cpu_ns() - cpu_start);
        _exit(0);
    }
    close(forth[0]);
    close(back[1]);
    pin(run->driver_cpu);

    struct samples samples = {0};
    uint64_t cpu_start = cpu_ns(), start = now_ns();
    uint64_t warm_until = start + (uint64_t)(run->seconds * 1e8);
    uint64_t end = warm_until + (uint64_t)(run->seconds * 1e9);
    uint64_t round_trips = 0;
    for (;;) {
        uint64_t before = now_ns();
        write_all(forth[1], message, size);
        read_all(back[0], message, size);
        uint64_t after = now_ns();
        round_trips++;
        if (after >= warm_until)
            add_sample(&samples, after - before);
        if (after >= end)
            break;
    }
    message[0] = 1;
    write_all(forth[1], message, size);
    double driver_cpu = (cpu_ns() - cpu_start) / 1e9;
    reap_peer(pid);
    print_latency(&samples, round_trips, driver_cpu + atomic_load(&sh->peer_cpu_ns) / 1e9);
}

/* How often the consumer looks at the clock: about every 256 KiB, at most 64 messages. */
static uint64_t check_period(size_t size)
{
    uint64_t period = (256u << 10) / size;
    return period < 1 ? 1 : period > 64 ? 64 : period;
}

/* One-way streaming: the peer produces fixed-size messages into a ring of slots (head
 * in `forth`), the driver consumes them into a private buffer (tail in `back`). Both
 * wait by spinning briefly, then sleeping in futex(2). */
static void ring_stream(const struct run *run)
{
    size_t size = run->size;
    size_t capacity = 4 * size > RING_MIN_CAPACITY ? 4 * size : RING_MIN_CAPACITY;
    uint32_t slots = (uint32_t)(capacity / size);
    struct shared *sh = map_shared((size_t)slots * size);
    unsigned char *message = calloc(1, size);
    if (message == NULL)
        die("calloc");

    pid_t pid = start_peer(run->peer_cpu);
    if (pid == 0) {
        /* 64-bit positions index the slots; their low 32 bits are the futex words. */
        uint64_t cpu_start = cpu_ns(), sent = 0;
        uint32_t tail = 0;
        for (int last = 0; !last;) {
            last = atomic_load_explicit(&sh->stop, memory_order_relaxed) != 0;
            while ((uint32_t)sent - tail == slots) {
                tail = atomic_load_explicit(&sh->back.value, memory_order_acquire);
                if ((uint32_t)sent - tail == slots)
                    tail = wait_change(&sh->back, tail, WAIT_HYBRID);
            }
            message[0] = (unsigned char)last;
            memcpy(sh->data + (size_t)(sent % slots) * size, message, size);
            sent++;
            publish(&sh->forth, (uint32_t)sent, WAIT_HYBRID);
        }
        atomic_store(&sh->peer_cpu_ns, cpu_ns() - cpu_start);
        atomic_store(&sh->peer_messages, sent);
        _exit(0);
    }
    pin(run->driver_cpu);

    uint64_t cpu_start = cpu_ns(), period = check_period(size);
    uint64_t received = 0, counted_from = 0, start = 0, warm_until = 0, end = 0, consumed = 0;
    uint32_t head = 0, release_every = slots / 4 ? slots / 4 : 1;
    for (;;) {
        while (head == (uint32_t)consumed) {
            head = atomic_load_explicit(&sh->forth.value, memory_order_acquire);
            if (head == (uint32_t)consumed)
                head = wait_change(&sh->forth, head, WAIT_HYBRID);
        }
        memcpy(message, sh->data + (size_t)(consumed % slots) * size, size);
        consumed++;
        /* Free the slots in batches: after draining what the producer had published,
         * or every quarter of the ring while it keeps up. */
        if ((uint32_t)consumed == head || consumed % release_every == 0)
            publish(&sh->back, (uint32_t)consumed, WAIT_HYBRID);
        if (message[0] == 1)
            break;
        if (++received == 1) {
            start = now_ns();
            warm_until = start + (uint64_t)(run->seconds * 1e8);
            end = warm_until + (uint64_t)(run->seconds * 1e9);
        } else if (received % period == 0) {
            uint64_t now = now_ns();
            if (warm_until && now >= warm_until) {
                counted_from = received;
                start = now;
                warm_until = 0;
            } else if (!warm_until && now >= end) {
                atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
            }
        }
    }
    uint64_t finished = now_ns();
    double driver_cpu = (cpu_ns() - cpu_start) / 1e9;
    reap_peer(pid);
    print_throughput(size, received - counted_from, (finished - start) / 1e9,
                     2 * atomic_load(&sh->peer_messages),
                     driver_cpu + atomic_load(&sh->peer_cpu_ns) / 1e9);
}

/* The copy every shared-memory transport pays at least once per side: SIZE-byte
 * blocks from one buffer to another, over a working set as large as the ring's. */
static void memcpy_bandwidth(const struct run *run)
{
    size_t size = run->size;
    size_t capacity = 4 * size > RING_MIN_CAPACITY ? 4 * size : RING_MIN_CAPACITY;
    size_t blocks = capacity / size;
    unsigned char *from = calloc(blocks, size), *to = calloc(blocks, size);
    if (from == NULL || to == NULL)
        die("calloc");
    pin(run->driver_cpu);
    uint64_t cpu_start = cpu_ns(), start = now_ns(), period = check_period(size);
    uint64_t warm_until = start + (uint64_t)(run->seconds * 1e8), end = 0, copies = 0;
    uint64_t now = start, counted_from = 0;
    for (;;) {
        size_t block = (size_t)(copies % blocks) * size;
        memcpy(to + block, from + block, size);
        copies++;
        if (copies % period == 0) {
            __asm__ __volatile__("" ::: "memory"); /* keep every copy */
            now = now_ns();
            if (!end && now >= warm_until) {
                start = now;
                counted_from = copies;
                end = now + (uint64_t)(run->seconds * 1e9);
            } else if (end && now >= end) {
                break;
            }
        }
    }
    if (to[0] != 0)
        fprintf(stderr, "baseline: impossible copy\n");
    print_throughput(size, copies - counted_from, (now - start) / 1e9, copies,
                     (cpu_ns() - cpu_start) / 1e9);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s spin|futex|hybrid|pipe|ring|memcpy SIZE SECONDS "
                        "DRIVER_CPU PEER_CPU\n", argv[0]);
        return 2;
    }
    struct run run = {
        .size = strtoul(argv[2], NULL, 10),
        .seconds = strtod(argv[3], NULL),
        .driver_cpu = atoi(argv[4]),
        .peer_cpu = atoi(argv[5]),
    };
    if (run.size < 1 || run.seconds <= 0) {
        fprintf(stderr, "baseline: SIZE must be >= 1 and SECONDS > 0\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "spin") == 0)
        shared_memory_ping_pong(&run, WAIT_SPIN);
    else if (strcmp(mode, "futex") == 0)
        shared_memory_ping_pong(&run, WAIT_FUTEX);
    else if (strcmp(mode, "hybrid") == 0)
        shared_memory_ping_pong(&run, WAIT_HYBRID);
    else if (strcmp(mode, "pipe") == 0)
        pipe_ping_pong(&run);
    else if (strcmp(mode, "ring") == 0)
        ring_stream(&run);
    else if (strcmp(mode, "memcpy") == 0)
        memcpy_bandwidth(&run);
    else {
        fprintf(stderr, "baseline: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
