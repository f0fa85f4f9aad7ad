/* C baselines for benchmarks/ring_bench.py: what the hardware allows between
 * two processes on two cores, with no Python in the way.
 *
 *   ring_baseline pingpong ROUNDS CPU_A CPU_B
 *       Two processes bounce a counter through two cache lines of shared memory,
 *       spinning (pause) on each side. Prints each round trip's median in ns.
 *   ring_baseline stream SIZE COUNT CAPACITY CPU_A CPU_B
 *       A single-producer single-consumer byte ring like unixipc's (16-byte record
 *       headers, padding at the end of a lap, head and tail on their own cache
 *       lines, each side reading the other's index only when it must): the
 *       producer copies each message in, the consumer copies it out into its own
 *       buffer. Prints messages per second and bytes per second.
 *
 * Compiled at run time by ring_bench.py: gcc -O2 -o ring_baseline ring_baseline.c
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void *shared(size_t bytes)
{
    void *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return memory;
}

static int compare(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int pingpong(long rounds, int cpu_a, int cpu_b)
{
    struct lines {
        _Alignas(64) uint64_t ping;
        _Alignas(64) uint64_t pong;
    } *lines = shared(sizeof *lines);
    pid_t child = fork();
    if (child == 0) {
        pin(cpu_b);
        for (uint64_t i = 1; i <= (uint64_t)rounds; i++) {
            while (__atomic_load_n(&lines->ping, __ATOMIC_ACQUIRE) != i) {
                __builtin_ia32_pause();
            }
            __atomic_store_n(&lines->pong, i, __ATOMIC_RELEASE);
        }
        _exit(0);
    }
    pin(cpu_a);
    int64_t *trips = malloc(sizeof(int64_t) * (size_t)rounds);
    for (uint64_t i = 1; i <= (uint64_t)rounds; i++) {
        int64_t start = now_ns();
        __atomic_store_n(&lines->ping, i, __ATOMIC_RELEASE);
        while (__atomic_load_n(&lines->pong, __ATOMIC_ACQUIRE) != i) {
            __builtin_ia32_pause();
        }
        trips[i - 1] = now_ns() - start;
    }
    waitpid(child, NULL, 0);
    qsort(trips, (size_t)rounds, sizeof(int64_t), compare);
    printf("%lld\n", (long long)trips[rounds / 2]);
    return 0;
}

struct ring {
    _Alignas(64) uint64_t tail;
    _Alignas(64) uint64_t head;
    _Alignas(64) char data[];
};

static int stream(uint64_t size, long count, uint64_t capacity, int cpu_a, int cpu_b)
{
    struct ring *ring = shared(sizeof(struct ring) + capacity);
    uint64_t record = (16 + size + 15) & ~(uint64_t)15;
    pid_t child = fork();
    if (child == 0) { /* consumer */
        pin(cpu_b);
        char *out = malloc(size ? size : 1);
        uint64_t head = 0, tail_seen = 0;
        for (long i = 0; i < count; i++) {
            for (;;) {
                if (tail_seen == head) { /* read the producer's line only when caught up */
                    tail_seen = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
                    if (tail_seen == head) {
                        __builtin_ia32_pause();
                        continue;
                    }
                }
                uint64_t offset = head % capacity;
                uint32_t length = *(uint32_t *)(ring->data + offset);
                if (length == UINT32_MAX) { /* padding to the end of the lap */
                    head += capacity - offset;
                    continue;
                }
                memcpy(out, ring->data + offset + 16, length);
                head += (16 + length + 15) & ~(uint64_t)15;
                __atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
                break;
            }
        }
        _exit(out[0] == 42 ? 0 : 0);
    }
    pin(cpu_a);
    char *in = malloc(size ? size : 1);
    memset(in, 42, size ? size : 1);
    uint64_t tail = 0, head_seen = 0;
    int64_t start = now_ns();
    for (long i = 0; i < count; i++) {
        uint64_t offset = tail % capacity;
        uint64_t padding = offset + record > capacity ? capacity - offset : 0;
        while (tail + padding + record - head_seen > capacity) {
            head_seen = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
            if (tail + padding + record - head_seen > capacity) {
                __builtin_ia32_pause();
            }
        }
        if (padding) {
            *(uint32_t *)(ring->data + offset) = UINT32_MAX;
            tail += padding;
            offset = 0;
        }
        memcpy(ring->data + offset + 16, in, size);
        *(uint32_t *)(ring->data + offset) = (uint32_t)size;
        tail += record;
        __atomic_store_n(&ring->tail, tail, __ATOMIC_RELEASE);
    }
    waitpid(child, NULL, 0);
    double seconds = (double)(now_ns() - start) / 1e9;
    printf("%.1f %.1f\n", (double)count / seconds, (double)count * (double)size / seconds);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "pingpong") == 0) {
        return pingpong(atol(argv[2]), atoi(argv[3]), atoi(argv[4]));
    }
    if (argc == 7 && strcmp(argv[1], "stream") == 0) {
        return stream(strtoull(argv[2], NULL, 10), atol(argv[3]), strtoull(argv[4], NULL, 10),
                      atoi(argv[5]), atoi(argv[6]));
    }
    fprintf(stderr, "usage: ring_baseline pingpong ROUNDS CPU_A CPU_B\n"
                    "       ring_baseline stream SIZE COUNT CAPACITY CPU_A CPU_B\n");
    return 2;
}
