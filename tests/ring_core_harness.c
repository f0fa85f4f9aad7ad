/* Drives the ring's plain C core (src/native/ring_core.c) without Python.
 * Compiled and run by tests/test_ring_core.py, with AddressSanitizer and
 * UndefinedBehaviorSanitizer when the compiler has them.
 *
 *   ring_core_harness traffic COUNT     a producer and a consumer process: every
 *                                       message arrives once, in order, intact
 *   ring_core_harness damage            each damage of a table gives RING_CORRUPT
 *   ring_core_harness fuzz ROUNDS SEED  random damage between random calls: every
 *                                       call returns (no crash, no hang), and a
 *                                       fresh ring works after each round
 *
 * The ring lives in a memfd; each handle holds its liveness lock through a
 * description of its own (opened via /proc/self/fd), as unixipc.Ring does.
 */
#define _GNU_SOURCE
#include "ring_core.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CAPACITY 4096
#define LENGTH (RING_DATA_OFFSET + CAPACITY)

static int memory_fd;
static char *base;

static const char *status_name(int status)
{
    static const char *names[] = {"OK",      "TIMEOUT",     "CLOSED",  "PEER_CLOSED",
                                  "PEER_DIED", "INTERRUPTED", "CORRUPT", "TOO_LARGE",
                                  "REFUSED", "NO_SLOT"};
    return status >= 0 && status <= RING_NO_SLOT ? names[status] : "?";
}

static void fail(const char *what)
{
    fprintf(stderr, "harness: %s\n", what);
    exit(2);
}

static int64_t after_ms(int64_t milliseconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + milliseconds * 1000000;
}

/* A fresh ring in a fresh memfd, mapped at `base`. */
static void make_ring(void)
{
    if (base != NULL) {
        munmap(base, LENGTH);
        close(memory_fd);
    }
    memory_fd = memfd_create("ring", MFD_CLOEXEC);
    if (memory_fd < 0 || ftruncate(memory_fd, LENGTH) != 0) {
        fail("memfd");
    }
    base = mmap(NULL, LENGTH, PROT_READ | PROT_WRITE, MAP_SHARED, memory_fd, 0);
    if (base == MAP_FAILED || ring_layout(base, LENGTH, CAPACITY, 0x5eed5eed5eed5ee0ULL) != 0) {
        fail("layout");
    }
}

/* Attach a handle with a slot of its own. */
static void open_handle(struct ring *ring)
{
    const char *problem = ring_attach(ring, base, LENGTH);
    if (problem != NULL) {
        fprintf(stderr, "harness: attach: %s\n", problem);
        exit(2);
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", memory_fd);
    ring->lock_fd = open(path, O_RDWR | O_CLOEXEC);
    if (ring->lock_fd < 0) {
        fail("lock description");
    }
    ring->slot = ring_claim_slot(ring, ring->lock_fd, 0);
    if (ring->slot < 0) {
        fail("slot");
    }
}

static void close_handle(struct ring *ring)
{
    ring_detach(ring, 1);
    close(ring->lock_fd);
}

/* Where received messages go: up to four at once (receive_many takes at most 8,
 * and at most a quarter of the capacity beyond the first). */
static char received[8][CAPACITY];
static uint32_t received_length[8];

static void *to_received(void *context, size_t index, uint32_t length)
{
    (void)context;
    if (index >= 8) {
        fail("more messages than asked for");
    }
    received_length[index] = length;
    return received[index];
}

/* ------------------------------------------------------------------ traffic */

static uint32_t length_of(uint32_t number, uint64_t largest)
{
    return (uint32_t)(4 + (number * 7919ULL) % (largest - 3));
}

static void fill(char *bytes, uint32_t number, uint32_t length)
{
    memcpy(bytes, &number, 4);
    for (uint32_t i = 4; i < length; i++) {
        bytes[i] = (char)(number + i);
    }
}

static int intact(const char *bytes, uint32_t length, uint32_t expected, uint64_t largest)
{
    uint32_t number;
    memcpy(&number, bytes, 4);
    if (number != expected || length != length_of(number, largest)) {
        return 0;
    }
    for (uint32_t i = 4; i < length; i++) {
        if (bytes[i] != (char)(number + i)) {
            return 0;
        }
    }
    return 1;
}

static int traffic(uint32_t count)
{
    make_ring();
    pid_t producer = fork();
    if (producer == 0) {
        struct ring ring;
        open_handle(&ring);
        static char bytes[8][CAPACITY];
        struct ring_message batch[8];
        for (uint32_t number = 0; number < count;) {
            uint32_t size = number % 3 == 0 ? 1 + number % 8 : 1; /* send_many and send */
            if (size > count - number) {
                size = count - number;
            }
            for (uint32_t i = 0; i < size; i++) {
                uint32_t length = length_of(number + i, ring.max_message);
                fill(bytes[i], number + i, length);
                batch[i].bytes = bytes[i];
                batch[i].length = length;
            }
            size_t sent;
            int64_t deadline = after_ms(30000);
            int status = size == 1 ? ring_send(&ring, bytes[0], batch[0].length, deadline, NULL)
                                   : ring_send_many(&ring, batch, size, &sent, deadline, NULL);
            if (status != RING_OK) {
                fprintf(stderr, "harness: send: %s\n", status_name(status));
                _exit(1);
            }
            number += size;
        }
        close_handle(&ring);
        _exit(0);
    }
    struct ring ring;
    open_handle(&ring);
    ring_publish_roles(&ring, RING_CONSUMER);
    uint32_t next = 0;
    for (int round = 0;; round++) {
        size_t got = 1;
        uint32_t length = 0;
        int status;
        if (round % 3 == 0) {
            status = ring_receive(&ring, to_received, NULL, &length, after_ms(30000), NULL);
        } else if (round % 3 == 1) {
            status = ring_receive_many(&ring, 4, to_received, NULL, &got, after_ms(30000), NULL);
        } else {
            uint64_t offset;
            status = ring_view_take(&ring, &offset, &length, after_ms(30000), NULL);
            if (status == RING_OK) {
                memcpy(received[0], base + offset, length);
                received_length[0] = length;
                ring_view_release(&ring);
            }
        }
        if (status == RING_PEER_CLOSED) {
            break;
        }
        if (status != RING_OK) {
            printf("receive: %s after %u\n", status_name(status), next);
            return 1;
        }
        for (size_t i = 0; i < got; i++) {
            const char *bytes = received[i];
            uint32_t number;
            memcpy(&number, bytes, 4);
            if ((round % 3 != 1 && length != received_length[0]) ||
                !intact(bytes, received_length[i], next, ring.max_message)) {
                printf("message %u is wrong (got number %u)\n", next, number);
                return 1;
            }
            next++;
        }
    }
    int status;
    waitpid(producer, &status, 0);
    struct ring_snapshot snapshot;
    ring_snapshot(&ring, &snapshot);
    printf("traffic: %u of %u messages, producer status %d, %llu bytes left\n", next, count,
           status, (unsigned long long)snapshot.used);
    return next == count && status == 0 && snapshot.used == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ damage */

static struct ring_header *header(void)
{
    return (struct ring_header *)base;
}

static void positions(uint64_t tail, uint64_t head, uint64_t free_position)
{
    header()->tail = tail;
    header()->head = head;
    header()->free = free_position;
}

enum { SEND, SEND_MANY, RECEIVE, RECEIVE_MANY, VIEW, SNAPSHOT };
static const char *call_names[] = {"send", "send_many", "receive", "receive_many", "view",
                                   "snapshot"};

static int call(struct ring *ring, int which, int64_t deadline)
{
    static char payload[CAPACITY];
    struct ring_message batch[2] = {{payload, 100}, {payload, 1}};
    size_t count;
    uint32_t length;
    uint64_t offset;
    struct ring_snapshot snapshot;
    switch (which) {
    case SEND:
        return ring_send(ring, payload, 100, deadline, NULL);
    case SEND_MANY:
        return ring_send_many(ring, batch, 2, &count, deadline, NULL);
    case RECEIVE:
        return ring_receive(ring, to_received, NULL, &length, deadline, NULL);
    case RECEIVE_MANY:
        return ring_receive_many(ring, 8, to_received, NULL, &count, deadline, NULL);
    case VIEW: {
        int status = ring_view_take(ring, &offset, &length, deadline, NULL);
        if (status == RING_OK) {
            ring_view_release(ring);
        }
        return status;
    }
    default:
        return ring_snapshot(ring, &snapshot);
    }
}

/* Each damage, then each call (several for the damage that is only suspected at
 * first): all must report RING_CORRUPT. */
static int damage(void)
{
    static char payload[1000];
    int failures = 0;
    const char *names[] = {"capacity - 8", "free past tail", "head into a record",
                           "head past tail", "free past head", "huge positions",
                           "record size too large", "tail ahead"};
    for (size_t which = 0; which < sizeof names / sizeof names[0]; which++) {
        for (int method = SEND; method <= SNAPSHOT; method++) {
            make_ring();
            struct ring ring;
            open_handle(&ring);
            struct ring_message three[3] = {{payload, 100}, {payload, 100}, {payload, 100}};
            size_t sent;
            switch (which) {
            case 0:
                positions(CAPACITY - 8, CAPACITY - 8, CAPACITY - 8);
                break;
            case 1: /* a full ring, so that send looks at free too */
                for (int i = 0; i < 4; i++) {
                    ring_send(&ring, payload, 1000, RING_TRY_ONCE, NULL);
                }
                header()->free = header()->tail + 16;
                break;
            case 2:
                ring_send_many(&ring, three, 3, &sent, RING_TRY_ONCE, NULL);
                header()->head = 64;
                break;
            case 3:
                ring_send_many(&ring, three, 3, &sent, RING_TRY_ONCE, NULL);
                header()->head = header()->tail + 256;
                break;
            case 4:
                ring_send_many(&ring, three, 3, &sent, RING_TRY_ONCE, NULL);
                header()->free = 128;
                break;
            case 5:
                positions(-16ULL, -16ULL, -16ULL);
                break;
            case 6:
                ring_send(&ring, payload, 100, RING_TRY_ONCE, NULL);
                ((struct ring_record *)(base + RING_DATA_OFFSET))->size = CAPACITY;
                break;
            default:
                ring_send(&ring, payload, 100, RING_TRY_ONCE, NULL);
                header()->tail += 512;
                ring_receive(&ring, to_received, NULL, &(uint32_t){0}, RING_TRY_ONCE, NULL);
                break;
            }
            int status = RING_OK;
            for (int attempt = 0; attempt < 8 && status != RING_CORRUPT; attempt++) {
                status = call(&ring, method, after_ms(300));
            }
            printf("%-22s %-12s %s%s%s\n", names[which], call_names[method], status_name(status),
                   status == RING_CORRUPT ? ": " : "", status == RING_CORRUPT ? ring.problem : "");
            /* A send that fits needs no look at what the consumers damaged, nor does
             * a snapshot at the records past the head: both may go on. */
            int positions_damaged = which == 0 || which == 1 || which == 5;
            int sends = method == SEND || method == SEND_MANY;
            int expected = status == RING_CORRUPT ||
                           (status == RING_OK && sends && !positions_damaged) ||
                           (status == RING_OK && method == SNAPSHOT &&
                            (which == 2 || which == 6 || which == 7));
            failures += !expected;
            close_handle(&ring);
        }
    }
    return failures != 0;
}

/* ------------------------------------------------------------------ fuzz */

static uint64_t state;

static uint64_t next_random(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

/* A value worth writing over a position or a length. */
static uint64_t nasty(uint64_t near)
{
    switch (next_random() % 10) {
    case 0:
        return 0;
    case 1:
        return CAPACITY - 8;
    case 2:
        return near + 8;
    case 3:
        return near + 16 * (next_random() % 64);
    case 4:
        return near - 16 * (next_random() % 64);
    case 5:
        return near + CAPACITY * (1 + next_random() % 3);
    case 6:
        return 1ULL << 63;
    case 7:
        return -16ULL;
    case 8:
        return next_random() % (2 * CAPACITY);
    default:
        return next_random();
    }
}

static void damage_somewhere(void)
{
    struct ring_header *h = header();
    struct ring_slot *slots = (struct ring_slot *)(base + RING_HEADER_BYTES);
    uint64_t offset = 16 * (next_random() % (CAPACITY / 16));
    struct ring_record *record = (struct ring_record *)(base + RING_DATA_OFFSET + offset);
    struct ring_slot *slot = &slots[next_random() % 4];
    switch (next_random() % 12) {
    case 0:
        h->tail = nasty(h->tail);
        break;
    case 1:
        h->head = nasty(h->head);
        break;
    case 2:
        h->free = nasty(h->free);
        break;
    case 3:
        record->size = (uint32_t)nasty(record->size);
        break;
    case 4:
        record->length = (uint32_t)nasty(record->length);
        break;
    case 5:
        record->tag ^= 1ULL << (next_random() % 64);
        break;
    case 6:
        record->tag = (record->tag & ~15ULL) | (next_random() % 16);
        break;
    case 7:
        slot->state = (uint32_t)(next_random() % 4);
        break;
    case 8:
        slot->claim_start = nasty(h->head);
        slot->claim_end = nasty(h->head);
        break;
    case 9:
        slot->read_start = nasty(h->free);
        slot->read_end = nasty(h->free);
        break;
    case 10:
        slot->waiting = (uint32_t)next_random();
        break;
    default:
        h->data.waiters = (uint32_t)next_random();
        break;
    }
}

static int fuzz(int rounds, uint64_t seed)
{
    static char payload[CAPACITY];
    int counts[RING_NO_SLOT + 1] = {0};
    state = seed | 1;
    for (int round = 0; round < rounds; round++) {
        make_ring();
        struct ring ring;
        open_handle(&ring);
        for (int step = 0; step < 200; step++) {
            if (next_random() % 8 == 0) {
                damage_somewhere();
            }
            int which = (int)(next_random() % 6);
            int status;
            if (which == SEND) {
                status = ring_send(&ring, payload, next_random() % (ring.max_message + 1),
                                   RING_TRY_ONCE, NULL);
            } else {
                status = call(&ring, which, next_random() % 16 == 0 ? after_ms(1) : RING_TRY_ONCE);
            }
            counts[status]++;
        }
        close_handle(&ring);
    }
    /* A fresh ring still works after all that. */
    make_ring();
    struct ring ring;
    open_handle(&ring);
    uint32_t length = 0;
    int sent = ring_send(&ring, "after", 5, RING_TRY_ONCE, NULL);
    int got = ring_receive(&ring, to_received, NULL, &length, RING_TRY_ONCE, NULL);
    printf("fuzz:");
    for (int i = 0; i <= RING_NO_SLOT; i++) {
        if (counts[i] != 0) {
            printf(" %s=%d", status_name(i), counts[i]);
        }
    }
    printf("; afterwards %s %s %u\n", status_name(sent), status_name(got), length);
    return !(sent == RING_OK && got == RING_OK && length == 5 && counts[RING_CORRUPT] > 0);
}

int main(int argc, char **argv)
{
    alarm(120); /* a hang fails the test instead of stalling it */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "traffic") == 0) {
        return traffic((uint32_t)strtoul(argv[2], NULL, 10));
    }
    if (argc == 2 && strcmp(argv[1], "damage") == 0) {
        return damage();
    }
    if (argc == 4 && strcmp(argv[1], "fuzz") == 0) {
        return fuzz(atoi(argv[2]), strtoull(argv[3], NULL, 10));
    }
    fprintf(stderr, "usage: ring_core_harness traffic COUNT | damage | fuzz ROUNDS SEED\n");
    return 2;
}
