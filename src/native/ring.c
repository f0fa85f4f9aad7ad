/* The shared-memory ring's hot path: claim, commit, consume, wait and recover.
 *
 * System calls: futex (FUTEX_WAIT_BITSET with an absolute CLOCK_MONOTONIC
 * deadline, FUTEX_WAKE; shared, not private, so they work across processes),
 * fcntl (F_OFD_SETLK, F_OFD_GETLK: one lock byte per attached handle is its
 * liveness token, released by the kernel when the process dies), getpid,
 * clock_gettime.
 *
 * The memory is a PosixSharedMemory mapping made by Python; RingCore holds a
 * buffer export of it, so it cannot be unmapped while this code uses it.
 * Layout and protocol (docs/design.md, "The ring") in short:
 *   header (4 KiB): layout line written once (magic last), then tail, head and
 *   free positions and the futex words, each on its own cache line;
 *   128 slots of 64 bytes: one per attached handle (state, roles, pid, waiter
 *   counts, and the position ranges it is claiming, reading or viewing);
 *   data: `capacity` bytes of records. Positions grow forever (64 bits); a
 *   record lives at position % capacity and never wraps: padding fills the end.
 * A record is a 16-byte header {length, size, tag} and its payload, 16-aligned.
 * The tag is mix(position ^ key) | kind, stored last: it commits the record, and
 * stale bytes from an earlier lap can never look committed for this position
 * (mix spreads every bit of the position over the whole tag: with the plain
 * XOR, nearby laps' tags share their high bytes, and a payload that ended two
 * bytes into a stale header could complete one, once in 32768 tries).
 * Producers claim with one CAS on tail; consumers claim with one CAS on head and
 * give space back by moving free (in order) or by marking the record consumed
 * (out of order) for whoever holds the oldest record to sweep.
 * Every offset and size read from the shared memory is checked before use.
 */
#include "common.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RING_MAGIC 0x31474E4952585855ULL /* "UXXRING1" read as little-endian */
#define RING_VERSION 2 /* 2: mixed tags */
#define LINE 64
#define HEADER_BYTES 4096
#define SLOT_COUNT 128
#define SLOT_BYTES 64
#define DATA_OFFSET (HEADER_BYTES + SLOT_COUNT * SLOT_BYTES)
#define RECORD_HEADER 16
#define RECORD_ALIGN 16
#define MIN_CAPACITY 1024
#define MAX_CAPACITY (1ULL << 31)
/* The lock byte that serializes recovery (slot i's liveness byte is i). */
#define RECOVERY_LOCK_BYTE SLOT_COUNT

#define KIND_MESSAGE 1ULL
#define KIND_PADDING 2ULL
#define KIND_CONSUMED 4ULL

#define SLOT_FREE 0U
#define SLOT_ATTACHED 1U
#define SLOT_DEAD 2U /* died; kept until no position it held can still matter */

#define ROLE_PRODUCER 1U
#define ROLE_CONSUMER 2U

#define EVENT_NONE 0U
#define EVENT_CLOSED 1U
#define EVENT_DIED 2U

#define WAITING_DATA 1U
#define WAITING_SPACE (1U << 16)

#define GIL_SPIN_NS 2000 /* first look with the GIL held */
#define SPIN_MIN_NS 4000
#define SPIN_START_NS 50000
#define SPIN_MAX_NS 150000
/* Woken this soon after the spin gave up: the peer most likely needed our CPU. */
#define SAME_CPU_NS 50000
/* Then this many waits sleep at once before spinning is tried again. */
#define SLEEP_FIRST_WAITS 16
#define SLICE_NS 200000000LL  /* a sleeper checks its peers' liveness this often */
#define POLL_CHECK_NS 50000000LL /* timeout=0 callers check liveness at most this often */

/* Test-only: stop the process (SIGSTOP) at one of these points (see ring.py). */
#define STOP_PRODUCER_CLAIMED 1
#define STOP_PRODUCER_HALF_WRITTEN 2
#define STOP_PRODUCER_WRITTEN 3
#define STOP_CONSUMER_CLAIMED 4
#define STOP_CONSUMER_COPIED 5
static int test_stop_point;

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define CAS(p, expected, desired)                                                                 \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_SEQ_CST,                 \
                                __ATOMIC_ACQUIRE)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

struct ring_header {
    /* Line 0: the layout, written once at creation, magic last. */
    uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;
    uint64_t capacity;
    uint64_t data_offset;
    uint32_t slot_count;
    uint32_t slot_bytes;
    uint64_t key;
    uint64_t max_message;
    /* Each hot word on its own cache line. */
    _Alignas(LINE) uint64_t tail; /* producers: end of the last claim */
    _Alignas(LINE) uint64_t head; /* consumers: start of the first unclaimed record */
    _Alignas(LINE) uint64_t free; /* consumers: everything before it may be overwritten */
    _Alignas(LINE) uint32_t data_futex;
    uint32_t data_waiters;
    _Alignas(LINE) uint32_t space_futex;
    uint32_t space_waiters;
    _Alignas(LINE) uint32_t producer_event; /* (sequence << 2) | EVENT_* */
    uint32_t consumer_event;
};
_Static_assert(sizeof(struct ring_header) <= HEADER_BYTES, "header fits its page");

struct ring_slot {
    uint32_t state;
    uint32_t roles;
    uint32_t pid;
    uint32_t waiting; /* sleepers of this handle: data in the low half, space in the high */
    uint64_t claim_start, claim_end; /* producer: the range being claimed or written */
    uint64_t read_start, read_end;   /* consumer: records claimed, being copied */
    uint64_t view_start, view_end;   /* consumer: the record held by receive_view() */
};
_Static_assert(sizeof(struct ring_slot) == SLOT_BYTES, "slot is one cache line");

struct record {
    uint32_t length; /* payload bytes */
    uint32_t size;   /* whole record in the ring, header and padding included */
    uint64_t tag;    /* tag_base(position) | kind: stored last */
};

typedef struct {
    PyObject_HEAD
    Py_buffer buffer;
    int has_buffer;
    struct ring_header *header;
    struct ring_slot *slots;
    char *data;
    uint64_t capacity;
    uint64_t key;
    uint64_t max_message;
    int lock_fd;
    int slot;             /* our slot; -1: take one before use (as in a child after fork) */
    uint32_t roles;       /* roles already published in our slot */
    int closing;          /* close() was called while another thread waits */
    int busy;             /* calls in progress (they may have released the GIL) */
    int view_open;
    uint64_t view_start, view_end;
    uint64_t cached_free; /* producer's last look at free */
    int64_t spin_ns;      /* adaptive spin before sleeping */
    int sleep_first;      /* waits left that skip the spin (peer on our CPU) */
    int64_t last_check_ns;
    uint32_t seen_producer_event, seen_consumer_event;
    PyObject *description; /* "shared-memory ring '/name'" for messages */
} RingObject;

/* ------------------------------------------------------------------ errors */

/* unixipc.errors.<name>, looked up once (a borrowed reference kept for the process). */
static PyObject *error_class(const char *name)
{
    static const char *names[] = {"IPCError",     "ClosedResourceError", "WouldBlock",
                                  "TimeoutExpired", "MessageTooLarge",   "PeerDied",
                                  "EndOfChannel"};
    static PyObject *classes[sizeof names / sizeof names[0]];
    size_t index = 0;
    while (index < sizeof names / sizeof names[0] && strcmp(names[index], name) != 0) {
        index++;
    }
    if (index == sizeof names / sizeof names[0]) {
        PyErr_Format(PyExc_SystemError, "unknown error class %s", name);
        return NULL;
    }
    if (classes[index] == NULL) {
        PyObject *module = PyImport_ImportModule("unixipc.errors");
        if (module == NULL) {
            return NULL;
        }
        classes[index] = PyObject_GetAttrString(module, name);
        Py_DECREF(module);
        if (classes[index] == NULL) {
            return NULL;
        }
    }
    Py_INCREF(classes[index]);
    return classes[index];
}

/* Raise unixipc.errors.<name>(message); with sent >= 0, also set its
 * messages_sent attribute (send_many). Returns NULL. */
static PyObject *vraise_error(const char *name, Py_ssize_t sent, const char *format, va_list vargs)
{
    PyObject *message = PyUnicode_FromFormatV(format, vargs);
    if (message == NULL) {
        return NULL;
    }
    PyObject *cls = error_class(name);
    if (cls == NULL) {
        Py_DECREF(message);
        return NULL;
    }
    PyObject *error = PyObject_CallOneArg(cls, message);
    Py_DECREF(message);
    if (error != NULL && sent >= 0) {
        PyObject *count = PyLong_FromSsize_t(sent);
        if (count == NULL || PyObject_SetAttrString(error, "messages_sent", count) < 0) {
            Py_CLEAR(error);
        }
        Py_XDECREF(count);
    }
    if (error != NULL) {
        PyErr_SetObject(cls, error);
        Py_DECREF(error);
    }
    Py_DECREF(cls);
    return NULL;
}

static PyObject *raise_error(const char *name, const char *format, ...)
{
    va_list vargs;
    va_start(vargs, format);
    vraise_error(name, -1, format, vargs);
    va_end(vargs);
    return NULL;
}

static PyObject *raise_error_sent(const char *name, Py_ssize_t sent, const char *format, ...)
{
    va_list vargs;
    va_start(vargs, format);
    vraise_error(name, sent, format, vargs);
    va_end(vargs);
    return NULL;
}

static PyObject *raise_corrupt(RingObject *self, const char *what, uint64_t position)
{
    return raise_error("IPCError",
                       "%U is corrupt: %s at position %llu; recreate it (unlink, then create)",
                       self->description, what, (unsigned long long)position);
}

/* ------------------------------------------------------------------ small helpers */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t record_size(uint64_t length)
{
    return (RECORD_HEADER + length + RECORD_ALIGN - 1) & ~(uint64_t)(RECORD_ALIGN - 1);
}

/* The tag of the record at `position` without its kind bits: the position and
 * the ring's random key through a bijective 64-bit mixer (splitmix64's finalizer),
 * so that tags of different positions differ in about half of their bits. */
static inline uint64_t tag_base(const RingObject *self, uint64_t position)
{
    uint64_t z = position ^ self->key;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z & ~(uint64_t)(RECORD_ALIGN - 1);
}

static inline uint64_t make_tag(const RingObject *self, uint64_t position, uint64_t kind)
{
    return tag_base(self, position) | kind;
}

static inline struct record *record_at(const RingObject *self, uint64_t position)
{
    return (struct record *)(self->data + position % self->capacity);
}

static inline void maybe_stop(int point)
{
    if (UNLIKELY(test_stop_point == point)) {
        raise(SIGSTOP);
    }
}

static long futex_wait_until(uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
    struct timespec at = {.tv_sec = (time_t)(deadline_ns / 1000000000),
                          .tv_nsec = (long)(deadline_ns % 1000000000)};
    return syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, &at, NULL,
                   FUTEX_BITSET_MATCH_ANY);
}

static void futex_wake_all(uint32_t *word)
{
    __atomic_fetch_add(word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* ------------------------------------------------------------------ liveness */

static int lock_byte(RingObject *self, int byte, short type)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(self->lock_fd, F_OFD_SETLK, &lock);
}

/* True unless the slot's lock byte is free: its holder is gone. Errors count as alive. */
static int slot_alive(RingObject *self, int index)
{
    if (index == self->slot) {
        return 1;
    }
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = index, .l_len = 1};
    if (fcntl(self->lock_fd, F_OFD_GETLK, &lock) != 0) {
        return 1;
    }
    return lock.l_type != F_UNLCK;
}

static void raise_event(uint32_t *word, uint32_t kind)
{
    uint32_t old = LOAD(word);
    while (!CAS(word, &old, (((old >> 2) + 1) << 2) | kind)) {
    }
}

/* Take a dead handle's slot out of the census (caller holds its lock byte):
 * report its death to peers and give back the waiter counts it held. */
static void bury_slot(RingObject *self, struct ring_slot *slot)
{
    struct ring_header *header = self->header;
    uint32_t waiting = __atomic_exchange_n(&slot->waiting, 0, __ATOMIC_SEQ_CST);
    if (waiting & 0xFFFFU) {
        __atomic_fetch_sub(&header->data_waiters, waiting & 0xFFFFU, __ATOMIC_SEQ_CST);
    }
    if (waiting >> 16) {
        __atomic_fetch_sub(&header->space_waiters, waiting >> 16, __ATOMIC_SEQ_CST);
    }
    uint32_t roles = LOAD(&slot->roles);
    STORE(&slot->state, SLOT_DEAD);
    if (roles & ROLE_PRODUCER) {
        raise_event(&header->producer_event, EVENT_DIED);
    }
    if (roles & ROLE_CONSUMER) {
        raise_event(&header->consumer_event, EVENT_DIED);
    }
    futex_wake_all(&header->data_futex);
    futex_wake_all(&header->space_futex);
}

struct census {
    int producers, consumers, attached;
};

/* Count the live handles by role; bury the dead ones found on the way. */
static void take_census(RingObject *self, struct census *census)
{
    census->producers = census->consumers = census->attached = 0;
    for (int i = 0; i < SLOT_COUNT; i++) {
        struct ring_slot *slot = &self->slots[i];
        if (LOAD(&slot->state) != SLOT_ATTACHED) {
            continue;
        }
        if (!slot_alive(self, i)) {
            if (lock_byte(self, i, F_WRLCK) == 0) {
                if (LOAD(&slot->state) == SLOT_ATTACHED) {
                    bury_slot(self, slot);
                }
                lock_byte(self, i, F_UNLCK);
            }
            continue;
        }
        uint32_t roles = LOAD(&slot->roles);
        census->attached++;
        census->producers += (roles & ROLE_PRODUCER) != 0;
        census->consumers += (roles & ROLE_CONSUMER) != 0;
    }
}

/* A dead slot can be reused once every position it claimed, read or viewed is free. */
static int slot_settled(RingObject *self, struct ring_slot *slot)
{
    uint64_t free_position = LOAD(&self->header->free);
    return LOAD(&slot->claim_end) <= free_position && LOAD(&slot->read_end) <= free_position &&
           LOAD(&slot->view_end) <= free_position;
}

/* ------------------------------------------------------------------ records */

enum { PEEK_EMPTY, PEEK_MESSAGE, PEEK_PADDING, PEEK_BAD };

/* What is committed at `position`: nothing yet, a message, padding, or a bad header. */
static inline int peek(const RingObject *self, uint64_t position, uint32_t *length,
                       uint64_t *size)
{
    struct record *record = record_at(self, position);
    uint64_t tag = LOAD(&record->tag);
    uint64_t base = tag_base(self, position);
    int kind;
    if (tag == (base | KIND_MESSAGE)) {
        kind = PEEK_MESSAGE;
    } else if (tag == (base | KIND_PADDING)) {
        kind = PEEK_PADDING;
    } else {
        return PEEK_EMPTY;
    }
    uint32_t record_bytes = LOAD_RELAXED(&record->size);
    uint32_t payload = LOAD_RELAXED(&record->length);
    uint64_t room = self->capacity - position % self->capacity;
    if (record_bytes < RECORD_HEADER || record_bytes % RECORD_ALIGN != 0 || record_bytes > room ||
        (kind == PEEK_MESSAGE && (uint64_t)payload + RECORD_HEADER > record_bytes)) {
        return PEEK_BAD;
    }
    *length = payload;
    *size = record_bytes;
    return kind;
}

static inline void wake_readers(RingObject *self)
{
    /* seq_cst: the commit before must be visible before this load (Dekker with
     * the waiter, which registers and then looks). A plain load on x86. */
    if (UNLIKELY(__atomic_load_n(&self->header->data_waiters, __ATOMIC_SEQ_CST) != 0)) {
        futex_wake_all(&self->header->data_futex);
    }
}

static inline void wake_writers(RingObject *self)
{
    if (UNLIKELY(__atomic_load_n(&self->header->space_waiters, __ATOMIC_SEQ_CST) != 0)) {
        futex_wake_all(&self->header->space_futex);
    }
}

/* Move free over records (messages and padding) that their readers marked consumed.
 * Padding too must be marked: until its reader is done with the claim that covers
 * it, no one may free it (the reader still walks the record headers there). */
static void sweep_free(RingObject *self, uint64_t position)
{
    struct ring_header *header = self->header;
    for (;;) {
        if (position >= LOAD(&header->head)) {
            return;
        }
        struct record *record = record_at(self, position);
        uint64_t tag = LOAD(&record->tag);
        uint64_t base = tag_base(self, position);
        if (tag == (base | KIND_MESSAGE | KIND_CONSUMED) ||
            tag == (base | KIND_PADDING | KIND_CONSUMED)) {
            uint64_t size = LOAD_RELAXED(&record->size);
            if (size < RECORD_HEADER || size % RECORD_ALIGN != 0 ||
                size > self->capacity - position % self->capacity) {
                return; /* stale or damaged: leave it to a consumer's check */
            }
            uint64_t expected = position;
            if (CAS(&header->free, &expected, position + size)) {
                position += size;
            } else {
                position = expected;
            }
            continue;
        }
        uint64_t current = LOAD(&header->free);
        if (current == position) {
            return; /* the oldest record is still being read */
        }
        position = current;
    }
}

/* Give back the records [start, end) this handle claimed and has finished with. */
static void release_records(RingObject *self, uint64_t start, uint64_t end)
{
    struct ring_header *header = self->header;
    uint64_t expected = start;
    if (CAS(&header->free, &expected, end)) {
        sweep_free(self, end);
    } else {
        /* An older record is still being read: mark ours for its reader to sweep.
         * Each record's size is read before it is marked (once marked, it may be
         * freed and overwritten at once). */
        for (uint64_t position = start; position < end;) {
            struct record *record = record_at(self, position);
            uint64_t tag = LOAD(&record->tag);
            uint64_t size = LOAD_RELAXED(&record->size);
            if (tag == make_tag(self, position, KIND_MESSAGE) ||
                tag == make_tag(self, position, KIND_PADDING)) {
                __atomic_exchange_n(&record->tag, tag | KIND_CONSUMED, __ATOMIC_SEQ_CST);
            }
            if (size < RECORD_HEADER) {
                break; /* cannot happen for records we validated; never loop forever */
            }
            position += size;
        }
        sweep_free(self, LOAD(&header->free));
    }
    wake_writers(self);
}

/* ------------------------------------------------------------------ recovery */

/* Hold the recovery lock while repairing what a dead process left; returns 0 if taken. */
static int recovery_lock(RingObject *self)
{
    return lock_byte(self, RECOVERY_LOCK_BYTE, F_WRLCK);
}

static void recovery_unlock(RingObject *self)
{
    lock_byte(self, RECOVERY_LOCK_BYTE, F_UNLCK);
}

/* The record at `position` is claimed but not committed. If every handle whose
 * claim covers it is dead, return the end of the smallest such claim (the dead
 * owner's claim reaches at least that far); else 0. */
static uint64_t dead_claim_end(RingObject *self, uint64_t position)
{
    uint64_t smallest = 0;
    for (int i = 0; i < SLOT_COUNT; i++) {
        struct ring_slot *slot = &self->slots[i];
        uint32_t state = LOAD(&slot->state);
        if (state == SLOT_FREE) {
            continue;
        }
        uint64_t start = LOAD(&slot->claim_start), end = LOAD(&slot->claim_end);
        if (!(start <= position && position < end)) {
            continue;
        }
        if (state == SLOT_ATTACHED && slot_alive(self, i)) {
            return 0; /* still being written */
        }
        if (smallest == 0 || end < smallest) {
            smallest = end;
        }
    }
    return smallest;
}

/* Turn the unfinished record of a dead producer at the head into padding (up to
 * the end of its claim or of the lap; what is left is handled on a later call,
 * once readers have passed this). Returns 1 if it padded something. */
static int recover_dead_claims(RingObject *self)
{
    struct ring_header *header = self->header;
    if (recovery_lock(self) != 0) {
        return 0; /* another process is recovering */
    }
    int padded = 0;
    uint64_t position = LOAD(&header->head);
    struct record *record = record_at(self, position);
    /* One load decides "uncommitted": a separate look could see a commit made
     * just before the owner died, and padding would then swallow its messages. */
    uint64_t seen = LOAD(&record->tag);
    if (position < LOAD(&header->tail) && seen != make_tag(self, position, KIND_MESSAGE) &&
        seen != make_tag(self, position, KIND_PADDING)) {
        uint64_t end = dead_claim_end(self, position);
        /* Once its owner is known dead, the tag is final: if it is still `seen`, the
         * record was never committed, so the head is still stopped at it and no one
         * else writes or frees it. */
        if (end != 0 && LOAD(&record->tag) == seen && LOAD(&header->head) == position) {
            uint64_t lap_end = position - position % self->capacity + self->capacity;
            if (end > lap_end) {
                end = lap_end;
            }
            STORE_RELAXED(&record->length, 0);
            STORE_RELAXED(&record->size, (uint32_t)(end - position));
            padded = CAS(&record->tag, &seen, make_tag(self, position, KIND_PADDING));
        }
    }
    recovery_unlock(self);
    if (padded) {
        futex_wake_all(&header->data_futex);
    }
    return padded;
}

/* Records that dead consumers claimed but never gave back hold free still:
 * mark them consumed so free moves on. Returns 1 if space was reclaimed. */
static int recover_dead_readers(RingObject *self)
{
    struct ring_header *header = self->header;
    if (recovery_lock(self) != 0) {
        return 0;
    }
    int reclaimed = 0;
    for (int round = 0; round < 64; round++) {
        uint64_t position = LOAD(&header->free);
        if (position >= LOAD(&header->head)) {
            break;
        }
        struct record *record = record_at(self, position);
        uint64_t tag = LOAD(&record->tag);
        if (tag != make_tag(self, position, KIND_MESSAGE) &&
            tag != make_tag(self, position, KIND_PADDING)) {
            sweep_free(self, position); /* already consumed (or stale): just sweep */
            if (LOAD(&header->free) == position) {
                break;
            }
            continue;
        }
        int alive = 0;
        for (int i = 0; i < SLOT_COUNT && !alive; i++) {
            struct ring_slot *slot = &self->slots[i];
            uint32_t state = LOAD(&slot->state);
            if (state == SLOT_FREE) {
                continue;
            }
            int holds = (LOAD(&slot->read_start) <= position && position < LOAD(&slot->read_end)) ||
                        (LOAD(&slot->view_start) <= position && position < LOAD(&slot->view_end));
            alive = holds && state == SLOT_ATTACHED && slot_alive(self, i);
        }
        /* A live reader that finished with the record between our look at free and
         * at the slots no longer covers it, but it moved free past it: free still at
         * the record means its holder is dead, and only we may mark it (marking a
         * record already freed could corrupt a message written over it). */
        if (alive) {
            break;
        }
        if (LOAD(&header->free) != position || !CAS(&record->tag, &tag, tag | KIND_CONSUMED)) {
            continue; /* moved on meanwhile: look again at the new free */
        }
        reclaimed = 1;
        sweep_free(self, position);
    }
    recovery_unlock(self);
    if (reclaimed) {
        futex_wake_all(&header->space_futex);
    }
    return reclaimed;
}

/* ------------------------------------------------------------------ waiting */

enum {
    WAIT_READY,
    WAIT_TIMEOUT,
    WAIT_ERROR, /* exception set */
    WAIT_CLOSED,
    WAIT_PEER_CLOSED,
    WAIT_PEER_DIED,
};

static int data_ready(RingObject *self, uint64_t unused)
{
    (void)unused;
    uint64_t head = LOAD(&self->header->head);
    uint64_t tag = LOAD(&record_at(self, head)->tag);
    uint64_t base = tag_base(self, head);
    return tag == (base | KIND_MESSAGE) || tag == (base | KIND_PADDING);
}

static int space_ready(RingObject *self, uint64_t size)
{
    uint64_t free_position = LOAD(&self->header->free);
    uint64_t tail = LOAD(&self->header->tail);
    if (free_position > tail || tail - free_position > self->capacity) {
        return 1; /* moving under us, or damaged: let claim() take a careful look */
    }
    uint64_t offset = tail % self->capacity;
    uint64_t padding = offset + size > self->capacity ? self->capacity - offset : 0;
    return tail + padding + size - free_position <= self->capacity;
}

/* Are the peers this wait depends on gone? Repairs what dead ones left first.
 * Returns WAIT_READY if waiting should go on (or retry), else WAIT_PEER_*. */
static int check_peers(RingObject *self, int for_space, uint64_t size)
{
    struct ring_header *header = self->header;
    struct census census;
    take_census(self, &census);
    if (for_space) {
        recover_dead_readers(self);
        if (census.consumers > 0 || space_ready(self, size)) {
            return WAIT_READY;
        }
        uint32_t event = LOAD(&header->consumer_event) & 3U;
        return event == EVENT_DIED ? WAIT_PEER_DIED
               : event == EVENT_CLOSED ? WAIT_PEER_CLOSED
                                       : WAIT_READY;
    }
    recover_dead_claims(self);
    if (census.producers > 0 || data_ready(self, 0) ||
        LOAD(&header->tail) != LOAD(&header->head)) {
        return WAIT_READY;
    }
    uint32_t event = LOAD(&header->producer_event) & 3U;
    return event == EVENT_DIED ? WAIT_PEER_DIED : event == EVENT_CLOSED ? WAIT_PEER_CLOSED : WAIT_READY;
}

/* For timeout=0: check the peers at most every POLL_CHECK_NS (or when an event was raised). */
static int poll_peers(RingObject *self, int for_space, uint64_t size)
{
    uint32_t *event_word =
        for_space ? &self->header->consumer_event : &self->header->producer_event;
    uint32_t *seen = for_space ? &self->seen_consumer_event : &self->seen_producer_event;
    uint32_t event = LOAD(event_word);
    int64_t now = unixipc_monotonic_ns();
    if (event == *seen && now - self->last_check_ns < POLL_CHECK_NS) {
        return WAIT_READY;
    }
    *seen = event;
    self->last_check_ns = now;
    return check_peers(self, for_space, size);
}

/* Wait until ready(self, argument) may hold: spin briefly, then sleep on the futex.
 * Called with the GIL held; releases it while waiting. */
static int ring_wait(RingObject *self, int for_space, uint64_t argument, int64_t deadline)
{
    struct ring_header *header = self->header;
    int (*ready)(RingObject *, uint64_t) = for_space ? space_ready : data_ready;
    uint32_t *futex = for_space ? &header->space_futex : &header->data_futex;
    uint32_t *waiters = for_space ? &header->space_waiters : &header->data_waiters;
    uint32_t *event_word = for_space ? &header->consumer_event : &header->producer_event;
    uint32_t *seen_event = for_space ? &self->seen_consumer_event : &self->seen_producer_event;
    uint32_t waiting_unit = for_space ? WAITING_SPACE : WAITING_DATA;
    struct ring_slot *slot = self->slot >= 0 ? &self->slots[self->slot] : NULL;
    int result = WAIT_READY;

    /* When the peer seems to share our CPU, spinning only delays its answer. */
    int spinning = self->sleep_first == 0;
    if (!spinning) {
        self->sleep_first--;
    }

    /* Releasing and retaking the GIL costs hundreds of ns: in a ping-pong the
     * answer often comes sooner, so look for a short while with the GIL held. */
    if (spinning) {
        int64_t until = unixipc_monotonic_ns() + GIL_SPIN_NS;
        for (;;) {
            for (int i = 0; i < 16; i++) {
                if (ready(self, argument)) {
                    return WAIT_READY;
                }
                cpu_relax();
            }
            if (unixipc_monotonic_ns() >= until) {
                break;
            }
        }
    }
    PyThreadState *thread = PyEval_SaveThread();

    /* Spin: a message (or space) usually comes within microseconds, and a sleeping
     * core takes tens of microseconds to wake. The spin adapts: it grows when what
     * we waited for came soon after we started, and shrinks when we had to sleep long. */
    int64_t spin = __atomic_load_n(&self->spin_ns, __ATOMIC_RELAXED);
    int64_t start = unixipc_monotonic_ns();
    int64_t spin_until = spinning ? start + spin : start;
    if (deadline >= 0 && deadline < spin_until) {
        spin_until = deadline;
    }
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (ready(self, argument)) {
                goto done;
            }
            cpu_relax();
        }
        if (__atomic_load_n(&self->closing, __ATOMIC_RELAXED)) {
            result = WAIT_CLOSED;
            goto done;
        }
        if (unixipc_monotonic_ns() >= spin_until) {
            break;
        }
    }

    /* Sleep. Registering as a waiter is a full barrier before the last look, and
     * the other side commits before reading the waiter count: no wake-up is lost. */
    int64_t sleep_start = unixipc_monotonic_ns();
    __atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
    if (slot != NULL) {
        __atomic_fetch_add(&slot->waiting, waiting_unit, __ATOMIC_SEQ_CST);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    /* Peers that already left are noticed at once; deaths within a slice. */
    int64_t next_check = (LOAD(event_word) & 3U) != EVENT_NONE ? start : start + SLICE_NS;
    for (;;) {
        uint32_t sequence = LOAD(futex);
        if (ready(self, argument)) {
            break;
        }
        if (__atomic_load_n(&self->closing, __ATOMIC_RELAXED)) {
            result = WAIT_CLOSED;
            break;
        }
        int64_t now = unixipc_monotonic_ns();
        uint32_t event = LOAD(event_word);
        if (event != *seen_event || now >= next_check) {
            *seen_event = event;
            next_check = now + SLICE_NS;
            self->last_check_ns = now;
            result = check_peers(self, for_space, argument);
            if (result != WAIT_READY) {
                break;
            }
            if (ready(self, argument)) {
                break;
            }
        }
        if (deadline >= 0 && now >= deadline) {
            result = WAIT_TIMEOUT;
            break;
        }
        int64_t until = next_check;
        if (deadline >= 0 && deadline < until) {
            until = deadline;
        }
        if (futex_wait_until(futex, sequence, until) != 0 && errno == EINTR) {
            PyEval_RestoreThread(thread);
            int failed = unixipc_after_eintr() < 0;
            thread = PyEval_SaveThread();
            if (failed) {
                result = WAIT_ERROR;
                break;
            }
        }
    }
    if (slot != NULL) {
        __atomic_fetch_sub(&slot->waiting, waiting_unit, __ATOMIC_SEQ_CST);
    }
    __atomic_fetch_sub(waiters, 1, __ATOMIC_SEQ_CST);
    if (spinning) {
        int64_t now = unixipc_monotonic_ns();
        int64_t waited = now - start;
        if (result == WAIT_READY && now - sleep_start < SAME_CPU_NS) {
            /* It came as soon as we stopped spinning: the peer most likely needed
             * this CPU to answer (both pinned to one CPU, or a busy machine), so
             * the spin only delayed it. Measured: a 64 B round trip between two
             * processes pinned to one CPU took 160 us while the spin grew. */
            self->sleep_first = SLEEP_FIRST_WAITS;
        } else if (result == WAIT_READY && waited < SPIN_MAX_NS) {
            spin = waited * 2 > spin * 2 ? waited * 2 : spin * 2;
        } else {
            spin /= 2;
        }
        spin = spin < SPIN_MIN_NS ? SPIN_MIN_NS : spin > SPIN_MAX_NS ? SPIN_MAX_NS : spin;
        __atomic_store_n(&self->spin_ns, spin, __ATOMIC_RELAXED);
    }
done:
    PyEval_RestoreThread(thread);
    return result;
}

/* ------------------------------------------------------------------ arguments */

#define TRY_ONCE 0
/* Parse `timeout` into an absolute monotonic deadline: -1 none, 0 try once. */
static int parse_timeout(PyObject *timeout, int64_t *deadline, double *seconds)
{
    *seconds = -1.0;
    if (timeout == NULL || timeout == Py_None) {
        *deadline = UNIXIPC_NO_DEADLINE;
        return 0;
    }
    if (PyBool_Check(timeout) || !(PyFloat_Check(timeout) || PyLong_Check(timeout))) {
        PyErr_Format(PyExc_TypeError, "timeout must be a number of seconds or None, not %s",
                     Py_TYPE(timeout)->tp_name);
        return -1;
    }
    double value = PyFloat_AsDouble(timeout);
    if (value == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(value) || value < 0) {
        PyErr_Format(PyExc_ValueError, "timeout must be >= 0 seconds or None, got %R", timeout);
        return -1;
    }
    *seconds = value;
    if (value == 0) {
        *deadline = TRY_ONCE;
    } else if (value > 1e9) {
        *deadline = UNIXIPC_NO_DEADLINE; /* more than 30 years: forever */
    } else {
        *deadline = unixipc_monotonic_ns() + (int64_t)(value * 1e9);
    }
    return 0;
}

/* Accept (name[0], ..., *, timeout=None) from a vectorcall; the named
 * arguments may also come as keywords. */
static int parse_args(const char *function, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, Py_ssize_t expected, const char *const *names,
                      PyObject **out, PyObject **timeout)
{
    *timeout = NULL;
    if (nargs > expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional argument%s (%zd given)", function,
                     expected, expected == 1 ? "" : "s", nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < expected; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    if (kwnames != NULL) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            PyObject **slot = NULL;
            if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
                slot = timeout;
            }
            for (Py_ssize_t i = 0; i < expected && slot == NULL; i++) {
                if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                    slot = &out[i];
                }
            }
            if (slot == NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R",
                             function, key);
                return -1;
            }
            if (*slot != NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument %R",
                             function, key);
                return -1;
            }
            *slot = args[nargs + k];
        }
    }
    for (Py_ssize_t i = 0; i < expected; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", function,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

static const char *const DATA_NAMES[] = {"data"};
static const char *const MESSAGES_NAMES[] = {"messages"};
static const char *const BUFFER_NAMES[] = {"buffer"};
static const char *const MAX_COUNT_NAMES[] = {"max_count"};

/* ------------------------------------------------------------------ entering a call */

static int reattach(RingObject *self)
{
    PyObject *result = PyObject_CallMethod((PyObject *)self, "_reattach", NULL);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static inline int ring_enter(RingObject *self)
{
    if (UNLIKELY(self->header == NULL)) {
        if (self->description == NULL) {
            PyErr_SetString(PyExc_ValueError, "the ring is not attached");
            return -1;
        }
        raise_error("ClosedResourceError", "%U is closed", self->description);
        return -1;
    }
    if (UNLIKELY(self->slot < 0) && reattach(self) < 0) {
        return -1;
    }
    self->busy++;
    return 0;
}

static inline void ring_leave(RingObject *self)
{
    self->busy--;
}

static inline void publish_role(RingObject *self, uint32_t role)
{
    if (UNLIKELY(!(self->roles & role)) && self->slot >= 0) {
        self->roles |= role;
        __atomic_fetch_or(&self->slots[self->slot].roles, role, __ATOMIC_SEQ_CST);
    }
}

/* Turn a wait's outcome into the exception it stands for (with messages_sent
 * when sent >= 0). Returns NULL. */
static PyObject *raise_wait(RingObject *self, int outcome, const char *what, double seconds,
                            Py_ssize_t sent)
{
    const char *peer = strncmp(what, "send", 4) == 0 ? "consumer" : "producer";
    switch (outcome) {
    case WAIT_TIMEOUT:
        if (seconds == 0) {
            return raise_error_sent("WouldBlock", sent, "%s on %U would block", what,
                                    self->description);
        }
        {
            char text[64];
            PyOS_snprintf(text, sizeof text, "%g", seconds);
            return raise_error_sent("TimeoutExpired", sent, "%s on %U timed out after %s s",
                                    what, self->description, text);
        }
    case WAIT_CLOSED:
        return raise_error_sent("ClosedResourceError", sent, "%U was closed during %s",
                                self->description, what);
    case WAIT_PEER_CLOSED:
        return raise_error_sent("EndOfChannel", sent, "%s on %U: every %s closed it", what,
                                self->description, peer);
    case WAIT_PEER_DIED:
        return raise_error_sent("PeerDied", sent, "%s on %U: every %s is gone and one died",
                                what, self->description, peer);
    default:
        return NULL; /* WAIT_ERROR: the exception is set */
    }
}

/* A call that found nothing to do with timeout=0, or that must wait. */
static int wait_or_give_up(RingObject *self, int for_space, uint64_t argument, int64_t deadline)
{
    if (deadline == TRY_ONCE) {
        int peers = poll_peers(self, for_space, argument);
        return peers == WAIT_READY ? WAIT_TIMEOUT : peers;
    }
    return ring_wait(self, for_space, argument, deadline);
}

/* ------------------------------------------------------------------ producing */

enum { CLAIM_OK, CLAIM_FULL, CLAIM_BAD };

/* A consistent look at free and tail. Loads are not simultaneous, but
 * free(1) <= tail and, when free(2) <= tail, tail - free(2) <= capacity always
 * hold for free(1) read before tail and free(2) after it; anything else is damage
 * (then an exception is set). Returns 0 with *free_out <= *tail_out, or -1. */
static int read_free_and_tail(RingObject *self, uint64_t *free_out, uint64_t *tail_out)
{
    struct ring_header *header = self->header;
    for (;;) {
        uint64_t before = LOAD(&header->free);
        uint64_t tail = LOAD(&header->tail);
        uint64_t after = LOAD(&header->free);
        if (after > tail) {
            continue; /* consumers passed this tail already: it is stale, look again */
        }
        if (before > tail || tail - after > self->capacity) {
            raise_error("IPCError",
                        "%U is corrupt: free (%llu, then %llu) and tail (%llu) are inconsistent; "
                        "recreate it (unlink, then create)",
                        self->description, (unsigned long long)before,
                        (unsigned long long)after, (unsigned long long)tail);
            return -1;
        }
        *free_out = after;
        *tail_out = tail;
        return 0;
    }
}

/* Claim [*start, *end) for records totalling `size` bytes after any padding needed.
 * Publishes the claim in our slot first, so that recovery knows whose it is. */
static int claim(RingObject *self, uint64_t size, uint64_t *start, uint64_t *end)
{
    struct ring_header *header = self->header;
    struct ring_slot *slot = &self->slots[self->slot];
    uint64_t tail = LOAD(&header->tail);
    for (;;) {
        uint64_t offset = tail % self->capacity;
        uint64_t padding = offset + size > self->capacity ? self->capacity - offset : 0;
        uint64_t claim_end = tail + padding + size;
        /* cached_free <= tail: it was read with an older tail, and tail only grows. */
        if (claim_end - self->cached_free > self->capacity) {
            uint64_t free_position;
            if (read_free_and_tail(self, &free_position, &tail) < 0) {
                return CLAIM_BAD;
            }
            self->cached_free = free_position;
            offset = tail % self->capacity;
            padding = offset + size > self->capacity ? self->capacity - offset : 0;
            claim_end = tail + padding + size;
            if (claim_end - free_position > self->capacity) {
                STORE_RELAXED(&slot->claim_end, 0);
                STORE_RELAXED(&slot->claim_start, 0);
                return CLAIM_FULL;
            }
        }
        STORE_RELAXED(&slot->claim_start, tail);
        STORE_RELAXED(&slot->claim_end, claim_end);
        if (CAS(&header->tail, &tail, claim_end)) {
            *start = tail;
            *end = claim_end;
            return CLAIM_OK;
        }
    }
}

/* Write a record's payload and header at `position`; the caller commits it. */
static inline void write_payload(RingObject *self, uint64_t position, const char *payload,
                                 uint64_t length)
{
    struct record *record = record_at(self, position);
    char *body = (char *)record + RECORD_HEADER;
    if (UNLIKELY(test_stop_point == STOP_PRODUCER_HALF_WRITTEN)) {
        memcpy(body, payload, length / 2);
        STORE_RELAXED(&record->length, (uint32_t)length);
        maybe_stop(STOP_PRODUCER_HALF_WRITTEN);
    }
    memcpy(body, payload, length);
    STORE_RELAXED(&record->length, (uint32_t)length);
    STORE_RELAXED(&record->size, (uint32_t)record_size(length));
    maybe_stop(STOP_PRODUCER_WRITTEN);
}

/* Write padding over [position, end) (the rest of the lap). */
static inline void write_padding(RingObject *self, uint64_t position, uint64_t end)
{
    struct record *record = record_at(self, position);
    STORE_RELAXED(&record->length, 0);
    STORE_RELAXED(&record->size, (uint32_t)(end - position));
    STORE(&record->tag, make_tag(self, position, KIND_PADDING));
}

static PyObject *raise_too_large(RingObject *self, Py_ssize_t length)
{
    return raise_error("MessageTooLarge",
                       "a message of %zd bytes is larger than the maximum of %llu bytes of %U",
                       length, (unsigned long long)self->max_message, self->description);
}

static int get_message(PyObject *data, Py_buffer *view)
{
    if (PyObject_GetBuffer(data, view, PyBUF_SIMPLE) == 0) {
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_BufferError) && PyObject_CheckBuffer(data)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "data must be C-contiguous");
    } else if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "data must be a bytes-like object, not %s",
                     Py_TYPE(data)->tp_name);
    }
    return -1;
}

static PyObject *Ring_send(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *data, *timeout;
    if (parse_args("send", args, nargs, kwnames, 1, DATA_NAMES, &data, &timeout) < 0) {
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    Py_buffer view;
    if (get_message(data, &view) < 0) {
        return NULL;
    }
    if (ring_enter(self) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if ((uint64_t)view.len > self->max_message) {
        raise_too_large(self, view.len);
        goto fail;
    }
    publish_role(self, ROLE_PRODUCER);
    uint64_t size = record_size((uint64_t)view.len);
    uint64_t start, end;
    for (;;) {
        int claimed = claim(self, size, &start, &end);
        if (claimed == CLAIM_OK) {
            break;
        }
        if (claimed == CLAIM_BAD) {
            goto fail; /* the exception is set */
        }
        int outcome = wait_or_give_up(self, 1, size, deadline);
        if (outcome != WAIT_READY) {
            raise_wait(self, outcome, "send", seconds, -1);
            goto fail;
        }
    }
    maybe_stop(STOP_PRODUCER_CLAIMED);
    uint64_t position = end - size;
    if (position != start) {
        write_padding(self, start, position);
    }
    write_payload(self, position, view.buf, (uint64_t)view.len);
    /* Commit: the exchange is also the barrier before reading the waiter count. */
    __atomic_exchange_n(&record_at(self, position)->tag, make_tag(self, position, KIND_MESSAGE),
                        __ATOMIC_SEQ_CST);
    wake_readers(self);
    ring_leave(self);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    ring_leave(self);
    PyBuffer_Release(&view);
    return NULL;
}

/* A message of send_many: bytes objects are read in place, others through a buffer. */
struct outgoing {
    const char *bytes;
    uint64_t length;
};

static PyObject *Ring_send_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    PyObject *messages, *timeout;
    if (parse_args("send_many", args, nargs, kwnames, 1, MESSAGES_NAMES, &messages, &timeout) < 0) {
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(messages, "messages must be an iterable of bytes-like objects");
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    struct outgoing *outgoing = PyMem_Malloc(sizeof(*outgoing) * (size_t)(count ? count : 1));
    Py_buffer *views = NULL;
    Py_ssize_t view_count = 0;
    PyObject *result = NULL;
    int entered = 0;
    if (outgoing == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    if (ring_enter(self) < 0) {
        goto out;
    }
    entered = 1;
    /* Check every message before sending any. */
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyBytes_CheckExact(items[i])) {
            outgoing[i].bytes = PyBytes_AS_STRING(items[i]);
            outgoing[i].length = (uint64_t)PyBytes_GET_SIZE(items[i]);
        } else {
            if (views == NULL) {
                views = PyMem_Malloc(sizeof(Py_buffer) * (size_t)count);
                if (views == NULL) {
                    PyErr_NoMemory();
                    goto out;
                }
            }
            if (get_message(items[i], &views[view_count]) < 0) {
                goto out;
            }
            outgoing[i].bytes = views[view_count].buf;
            outgoing[i].length = (uint64_t)views[view_count].len;
            view_count++;
        }
        if (outgoing[i].length > self->max_message) {
            raise_error("MessageTooLarge",
                        "message %zd of %zd bytes is larger than the maximum of %llu bytes of %U "
                        "(nothing was sent)",
                        i, (Py_ssize_t)outgoing[i].length, (unsigned long long)self->max_message,
                        self->description);
            goto out;
        }
    }
    publish_role(self, ROLE_PRODUCER);
    struct ring_header *header = self->header;
    struct ring_slot *slot = &self->slots[self->slot];
    Py_ssize_t sent = 0;
    while (sent < count) {
        /* Lay out as many messages as fit in the free space, padding at the lap's end. */
        uint64_t free_position, tail;
        if (read_free_and_tail(self, &free_position, &tail) < 0) {
            goto out;
        }
        uint64_t cursor = tail;
        Py_ssize_t fit = sent;
        while (fit < count) {
            uint64_t size = record_size(outgoing[fit].length);
            uint64_t offset = cursor % self->capacity;
            uint64_t next = cursor + (offset + size > self->capacity ? self->capacity - offset : 0) +
                            size;
            if (next - free_position > self->capacity) {
                break;
            }
            cursor = next;
            fit++;
        }
        if (fit == sent) {
            STORE_RELAXED(&slot->claim_end, 0); /* no stale claim while waiting */
            STORE_RELAXED(&slot->claim_start, 0);
            int outcome =
                wait_or_give_up(self, 1, record_size(outgoing[sent].length), deadline);
            if (outcome != WAIT_READY) {
                raise_wait(self, outcome, "send_many", seconds, sent);
                goto out;
            }
            continue;
        }
        STORE_RELAXED(&slot->claim_start, tail);
        STORE_RELAXED(&slot->claim_end, cursor);
        if (!CAS(&header->tail, &tail, cursor)) {
            continue;
        }
        maybe_stop(STOP_PRODUCER_CLAIMED);
        uint64_t position = tail;
        for (Py_ssize_t i = sent; i < fit; i++) {
            uint64_t size = record_size(outgoing[i].length);
            uint64_t offset = position % self->capacity;
            if (offset + size > self->capacity) {
                write_padding(self, position, position + self->capacity - offset);
                position += self->capacity - offset;
            }
            write_payload(self, position, outgoing[i].bytes, outgoing[i].length);
            STORE(&record_at(self, position)->tag, make_tag(self, position, KIND_MESSAGE));
            position += size;
        }
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        wake_readers(self);
        sent = fit;
    }
    result = Py_None;
    Py_INCREF(result);
out:
    if (entered) {
        ring_leave(self);
    }
    for (Py_ssize_t i = 0; i < view_count; i++) {
        PyBuffer_Release(&views[i]);
    }
    PyMem_Free(views);
    PyMem_Free(outgoing);
    Py_DECREF(sequence);
    return result;
}

/* ------------------------------------------------------------------ consuming */

enum { TAKE_OK, TAKE_EMPTY, TAKE_ERROR };

/* A consumer publishes the range it is about to claim before its CAS on head, so
 * that dead-reader recovery knows the records are held. When the CAS fails, the
 * range is withdrawn: left published, it would cover a record that another reader
 * claimed, and if that reader died, recovery would wait for us forever. */
static inline void withdraw_range(uint64_t *start, uint64_t *end)
{
    STORE_RELAXED(end, 0);
    STORE_RELAXED(start, 0);
}

/* Skip padding at the head (claimed and given back like a message: the padding
 * must not be freed while a reader may still read its size). Returns 1 if it
 * moved the head. */
static int skip_padding(RingObject *self, uint64_t head, uint64_t size)
{
    struct ring_slot *slot = &self->slots[self->slot];
    STORE_RELAXED(&slot->read_start, head);
    STORE_RELAXED(&slot->read_end, head + size);
    if (CAS(&self->header->head, &head, head + size)) {
        release_records(self, head, head + size);
        return 1;
    }
    withdraw_range(&slot->read_start, &slot->read_end);
    return 0;
}

/* A bad header at `head` is corruption only if head has not moved meanwhile
 * (a moved head means we read a record that was already recycled). */
static int confirm_bad(RingObject *self, uint64_t head)
{
    if (LOAD(&self->header->head) != head) {
        return 0;
    }
    raise_corrupt(self, "a record header is invalid", head);
    return 1;
}

/* Take one message: into `target` (receive_into) or into a new bytes object. */
static int take_one(RingObject *self, Py_buffer *target, PyObject **bytes_out, Py_ssize_t *length_out)
{
    struct ring_header *header = self->header;
    struct ring_slot *slot = &self->slots[self->slot];
    PyObject *bytes = NULL;
    for (;;) {
        uint64_t head = LOAD(&header->head);
        uint32_t length;
        uint64_t size;
        int kind = peek(self, head, &length, &size);
        if (kind == PEEK_EMPTY) {
            Py_XDECREF(bytes);
            return TAKE_EMPTY;
        }
        if (kind == PEEK_BAD) {
            if (confirm_bad(self, head)) {
                Py_XDECREF(bytes);
                return TAKE_ERROR;
            }
            continue;
        }
        if (kind == PEEK_PADDING) {
            skip_padding(self, head, size);
            continue;
        }
        if (target != NULL) {
            if ((Py_ssize_t)length > target->len) {
                raise_error("MessageTooLarge",
                            "the next message of %U has %u bytes: more than the buffer's %zd "
                            "(it stays in the ring)",
                            self->description, length, target->len);
                return TAKE_ERROR;
            }
        } else if (bytes == NULL || PyBytes_GET_SIZE(bytes) != (Py_ssize_t)length) {
            /* Allocate before claiming, so that a MemoryError loses no message. */
            Py_XDECREF(bytes);
            bytes = PyBytes_FromStringAndSize(NULL, length);
            if (bytes == NULL) {
                return TAKE_ERROR;
            }
        }
        STORE_RELAXED(&slot->read_start, head);
        STORE_RELAXED(&slot->read_end, head + size);
        if (!CAS(&header->head, &head, head + size)) {
            withdraw_range(&slot->read_start, &slot->read_end);
            continue;
        }
        maybe_stop(STOP_CONSUMER_CLAIMED);
        const char *body = (const char *)record_at(self, head) + RECORD_HEADER;
        if (target != NULL) {
            memcpy(target->buf, body, length);
        } else {
            memcpy(PyBytes_AS_STRING(bytes), body, length);
        }
        maybe_stop(STOP_CONSUMER_COPIED);
        release_records(self, head, head + size);
        *bytes_out = bytes;
        *length_out = (Py_ssize_t)length;
        return TAKE_OK;
    }
}

static PyObject *receive_common(RingObject *self, const char *what, PyObject *timeout,
                                Py_buffer *target)
{
    int64_t deadline;
    double seconds;
    if (parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    if (ring_enter(self) < 0) {
        return NULL;
    }
    publish_role(self, ROLE_CONSUMER);
    PyObject *bytes = NULL;
    Py_ssize_t length = 0;
    for (;;) {
        int taken = take_one(self, target, &bytes, &length);
        if (taken == TAKE_OK) {
            break;
        }
        if (taken == TAKE_ERROR) {
            ring_leave(self);
            return NULL;
        }
        int outcome = wait_or_give_up(self, 0, 0, deadline);
        if (outcome != WAIT_READY) {
            ring_leave(self);
            return raise_wait(self, outcome, what, seconds, -1);
        }
    }
    ring_leave(self);
    if (target != NULL) {
        return PyLong_FromSsize_t(length);
    }
    return bytes;
}

static PyObject *Ring_receive(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *timeout;
    if (parse_args("receive", args, nargs, kwnames, 0, NULL, NULL, &timeout) < 0) {
        return NULL;
    }
    return receive_common(self, "receive", timeout, NULL);
}

static PyObject *Ring_receive_into(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *buffer, *timeout;
    if (parse_args("receive_into", args, nargs, kwnames, 1, BUFFER_NAMES, &buffer, &timeout) < 0) {
        return NULL;
    }
    Py_buffer target;
    if (PyObject_GetBuffer(buffer, &target, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "buffer must be a writable C-contiguous bytes-like object, not %s",
                     Py_TYPE(buffer)->tp_name);
        return NULL;
    }
    PyObject *result = receive_common(self, "receive_into", timeout, &target);
    PyBuffer_Release(&target);
    return result;
}

static PyObject *Ring_receive_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *max_object, *timeout;
    if (parse_args("receive_many", args, nargs, kwnames, 1, MAX_COUNT_NAMES, &max_object, &timeout) < 0) {
        return NULL;
    }
    if (PyBool_Check(max_object) || !PyLong_Check(max_object)) {
        PyErr_Format(PyExc_TypeError, "max_count must be an int, not %s",
                     Py_TYPE(max_object)->tp_name);
        return NULL;
    }
    Py_ssize_t max_count = PyLong_AsSsize_t(max_object);
    if (max_count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (max_count < 1) {
        PyErr_Format(PyExc_ValueError, "max_count must be >= 1, got %zd", max_count);
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    if (ring_enter(self) < 0) {
        return NULL;
    }
    publish_role(self, ROLE_CONSUMER);
    struct ring_header *header = self->header;
    struct ring_slot *slot = &self->slots[self->slot];
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        goto fail;
    }
    for (;;) {
        /* Walk the committed records at the head, making a bytes object for each
         * message before claiming them all with one CAS. */
        uint64_t head = LOAD(&header->head);
        uint64_t position = head;
        Py_ssize_t found = 0;
        int bad = 0;
        if (PyList_SetSlice(list, 0, PyList_GET_SIZE(list), NULL) < 0) {
            goto fail;
        }
        /* At most a quarter of the ring per call: the space is given back only
         * when the whole batch is copied, and producers should keep writing
         * meanwhile (measured: 4 KiB messages went from 2.5 to 9.5 GB/s). */
        while (found < max_count && (found == 0 || position - head < self->capacity / 4)) {
            uint32_t length;
            uint64_t size;
            int kind = peek(self, position, &length, &size);
            if (kind == PEEK_EMPTY) {
                break;
            }
            if (kind == PEEK_BAD) {
                bad = 1;
                break;
            }
            if (kind == PEEK_MESSAGE) {
                PyObject *bytes = PyBytes_FromStringAndSize(NULL, length);
                if (bytes == NULL) {
                    goto fail;
                }
                int appended = PyList_Append(list, bytes);
                Py_DECREF(bytes);
                if (appended < 0) {
                    goto fail;
                }
                found++;
            }
            position += size;
        }
        if (position == head) {
            if (bad) {
                if (confirm_bad(self, head)) {
                    goto fail;
                }
                continue;
            }
            int outcome = wait_or_give_up(self, 0, 0, deadline);
            if (outcome != WAIT_READY) {
                raise_wait(self, outcome, "receive_many", seconds, -1);
                goto fail;
            }
            continue;
        }
        STORE_RELAXED(&slot->read_start, head);
        STORE_RELAXED(&slot->read_end, position);
        if (!CAS(&header->head, &head, position)) {
            withdraw_range(&slot->read_start, &slot->read_end);
            continue;
        }
        if (found == 0) {
            release_records(self, head, position); /* only padding */
            continue;
        }
        maybe_stop(STOP_CONSUMER_CLAIMED);
        Py_ssize_t index = 0;
        for (uint64_t at = head; at < position;) {
            struct record *record = record_at(self, at);
            uint64_t tag = LOAD_RELAXED(&record->tag);
            if (tag == make_tag(self, at, KIND_MESSAGE)) {
                PyObject *bytes = PyList_GET_ITEM(list, index++);
                memcpy(PyBytes_AS_STRING(bytes), (const char *)record + RECORD_HEADER,
                       (size_t)PyBytes_GET_SIZE(bytes));
            }
            at += record->size;
        }
        maybe_stop(STOP_CONSUMER_COPIED);
        release_records(self, head, position);
        break;
    }
    ring_leave(self);
    return list;
fail:
    ring_leave(self);
    Py_XDECREF(list);
    return NULL;
}

/* receive_view(): claim one message and return (offset in the mapping, length). */
static PyObject *Ring_view_take(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    PyObject *timeout;
    if (parse_args("receive_view", args, nargs, kwnames, 0, NULL, NULL, &timeout) < 0) {
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    if (ring_enter(self) < 0) {
        return NULL;
    }
    if (self->view_open) {
        ring_leave(self);
        return raise_error("IPCError",
                           "%U: a receive_view() of this handle is still open; leave its with "
                           "block first (or open another handle)",
                           self->description);
    }
    publish_role(self, ROLE_CONSUMER);
    struct ring_header *header = self->header;
    struct ring_slot *slot = &self->slots[self->slot];
    for (;;) {
        uint64_t head = LOAD(&header->head);
        uint32_t length;
        uint64_t size;
        int kind = peek(self, head, &length, &size);
        if (kind == PEEK_PADDING) {
            skip_padding(self, head, size);
            continue;
        }
        if (kind == PEEK_BAD) {
            if (confirm_bad(self, head)) {
                ring_leave(self);
                return NULL;
            }
            continue;
        }
        if (kind == PEEK_EMPTY) {
            int outcome = wait_or_give_up(self, 0, 0, deadline);
            if (outcome != WAIT_READY) {
                ring_leave(self);
                return raise_wait(self, outcome, "receive_view", seconds, -1);
            }
            continue;
        }
        STORE_RELAXED(&slot->view_start, head);
        STORE_RELAXED(&slot->view_end, head + size);
        if (!CAS(&header->head, &head, head + size)) {
            withdraw_range(&slot->view_start, &slot->view_end);
            continue;
        }
        self->view_open = 1;
        self->view_start = head;
        self->view_end = head + size;
        ring_leave(self);
        Py_ssize_t offset = (Py_ssize_t)((char *)record_at(self, head) + RECORD_HEADER -
                                         (char *)self->buffer.buf);
        return Py_BuildValue("nI", offset, length);
    }
}

static PyObject *Ring_view_release(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->header != NULL && self->view_open) {
        self->view_open = 0;
        release_records(self, self->view_start, self->view_end);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ lifecycle */

static PyObject *Ring_attach(RingObject *self, PyObject *args)
{
    PyObject *buffer_object, *description;
    int lock_fd;
    if (!PyArg_ParseTuple(args, "OiU:_attach", &buffer_object, &lock_fd, &description)) {
        return NULL;
    }
    if (self->has_buffer) {
        PyErr_SetString(PyExc_ValueError, "already attached");
        return NULL;
    }
    if (PyObject_GetBuffer(buffer_object, &self->buffer, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    self->has_buffer = 1;
    Py_INCREF(description);
    Py_XSETREF(self->description, description);
    char *base = self->buffer.buf;
    Py_ssize_t length = self->buffer.len;
    const char *problem = NULL;
    struct ring_header *header = (struct ring_header *)base;
    if (length < DATA_OFFSET + MIN_CAPACITY || ((uintptr_t)base % 4096) != 0) {
        problem = "it is too small to hold a ring";
    } else if (LOAD(&header->magic) != RING_MAGIC) {
        problem = LOAD(&header->magic) == 0 ? "it was never initialized (its creator may have "
                                              "died while creating it)"
                                            : "it does not start with the ring's magic number";
    } else if (header->version != RING_VERSION) {
        problem = "its layout version is not the one this unixipc reads";
    } else if (header->header_bytes != HEADER_BYTES || header->slot_count != SLOT_COUNT ||
               header->slot_bytes != SLOT_BYTES || header->data_offset != DATA_OFFSET) {
        problem = "its layout does not match";
    } else if (header->capacity < MIN_CAPACITY || header->capacity > MAX_CAPACITY ||
               header->capacity % LINE != 0 ||
               header->capacity > (uint64_t)(length - DATA_OFFSET)) {
        problem = "its capacity does not match its size";
    } else if (header->max_message != header->capacity / 2 - RECORD_HEADER ||
               header->key % RECORD_ALIGN != 0) {
        problem = "its limits are inconsistent";
    }
    if (problem != NULL) {
        PyBuffer_Release(&self->buffer);
        self->has_buffer = 0;
        return raise_error("IPCError", "%U is not a usable unixipc ring: %s", description,
                           problem);
    }
    self->slots = (struct ring_slot *)(base + HEADER_BYTES);
    self->data = base + DATA_OFFSET;
    self->capacity = header->capacity;
    self->key = header->key;
    self->max_message = header->max_message;
    self->lock_fd = lock_fd;
    self->slot = -1;
    self->spin_ns = SPIN_START_NS;
    self->cached_free = LOAD(&header->free);
    self->seen_producer_event = LOAD(&header->producer_event);
    self->seen_consumer_event = LOAD(&header->consumer_event);
    self->header = header;
    Py_RETURN_NONE;
}

/* Find a slot whose lock byte we can hold through lock_fd, and that is free or
 * whose dead owner's positions are all settled; mark it attached with roles and
 * our pid. Returns its index, -1 if none is free, -2 with an exception set. */
static int claim_slot(RingObject *self, int lock_fd, uint32_t roles)
{
    for (int i = 0; i < SLOT_COUNT; i++) {
        struct ring_slot *slot = &self->slots[i];
        uint32_t state = LOAD(&slot->state);
        if (state == SLOT_ATTACHED && slot_alive(self, i)) {
            continue;
        }
        struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = i, .l_len = 1};
        if (fcntl(lock_fd, F_OFD_SETLK, &lock) != 0) {
            if (errno == EAGAIN || errno == EACCES) {
                continue;
            }
            unixipc_raise_errno(NULL);
            return -2;
        }
        state = LOAD(&slot->state);
        if (state == SLOT_ATTACHED) {
            bury_slot(self, slot);
            state = SLOT_DEAD;
        }
        if (state == SLOT_DEAD && !slot_settled(self, slot)) {
            lock.l_type = F_UNLCK;
            fcntl(lock_fd, F_OFD_SETLK, &lock);
            continue;
        }
        STORE_RELAXED(&slot->roles, roles);
        STORE_RELAXED(&slot->waiting, 0);
        STORE_RELAXED(&slot->pid, (uint32_t)getpid());
        STORE_RELAXED(&slot->claim_start, 0);
        STORE_RELAXED(&slot->claim_end, 0);
        STORE_RELAXED(&slot->read_start, 0);
        STORE_RELAXED(&slot->read_end, 0);
        STORE_RELAXED(&slot->view_start, 0);
        STORE_RELAXED(&slot->view_end, 0);
        __atomic_store_n(&slot->state, SLOT_ATTACHED, __ATOMIC_SEQ_CST);
        return i;
    }
    return -1;
}

/* Take a slot for this handle, its liveness held through lock_fd. */
static PyObject *Ring_take_slot(RingObject *self, PyObject *args)
{
    int lock_fd;
    if (!PyArg_ParseTuple(args, "i:_take_slot", &lock_fd)) {
        return NULL;
    }
    if (self->header == NULL) {
        return raise_error("ClosedResourceError", "%U is closed", self->description);
    }
    self->lock_fd = lock_fd;
    self->slot = -1;
    self->roles = 0;
    int index = claim_slot(self, lock_fd, 0);
    if (index == -2) {
        return NULL;
    }
    self->slot = index;
    return PyLong_FromLong(index);
}

/* Before fork: take a second slot with this handle's roles (and the roles in
 * `extra`: those an end not used yet will take), its lock held through lock_fd,
 * for the child to adopt. While the child holds lock_fd, the roles stay alive
 * even after the parent closes its own handle (as a descriptor inherited by fork
 * keeps a pipe open). Returns the index, -1 if there is nothing to hand over or
 * no free slot. */
static PyObject *Ring_reserve_for_child(RingObject *self, PyObject *args)
{
    int lock_fd;
    unsigned int extra = 0;
    if (!PyArg_ParseTuple(args, "i|I:_reserve_for_child", &lock_fd, &extra)) {
        return NULL;
    }
    uint32_t roles = self->roles | (extra & (ROLE_PRODUCER | ROLE_CONSUMER));
    if (self->header == NULL || self->slot < 0 || roles == 0) {
        return PyLong_FromLong(-1);
    }
    int index = claim_slot(self, lock_fd, roles);
    return index == -2 ? NULL : PyLong_FromLong(index);
}

/* In the child after fork: make the slot reserved before the fork ours. */
static PyObject *Ring_adopt_slot(RingObject *self, PyObject *args)
{
    int index, lock_fd;
    if (!PyArg_ParseTuple(args, "ii:_adopt_slot", &index, &lock_fd)) {
        return NULL;
    }
    if (self->header == NULL || index < 0 || index >= SLOT_COUNT) {
        PyErr_SetString(PyExc_ValueError, "no such slot");
        return NULL;
    }
    struct ring_slot *slot = &self->slots[index];
    STORE_RELAXED(&slot->pid, (uint32_t)getpid());
    self->slot = index;
    self->lock_fd = lock_fd;
    self->roles = LOAD(&slot->roles);
    Py_RETURN_NONE;
}

/* Publish roles now (declare()). */
static PyObject *Ring_declare(RingObject *self, PyObject *args)
{
    unsigned int roles;
    if (!PyArg_ParseTuple(args, "I:_declare", &roles)) {
        return NULL;
    }
    if (ring_enter(self) < 0) {
        return NULL;
    }
    publish_role(self, roles & ROLE_PRODUCER);
    publish_role(self, roles & ROLE_CONSUMER);
    ring_leave(self);
    Py_RETURN_NONE;
}

/* In a child after fork: the slot belongs to the parent; take another before use. */
static PyObject *Ring_forked(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    self->slot = -1;
    self->roles = 0;
    self->lock_fd = -1;
    self->busy = 0;
    self->view_open = 0;
    Py_RETURN_NONE;
}

/* Another thread is closing: wake our waiters so that they give up. */
static PyObject *Ring_begin_close(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    __atomic_store_n(&self->closing, 1, __ATOMIC_SEQ_CST);
    if (self->header != NULL && self->busy > 0) {
        futex_wake_all(&self->header->data_futex);
        futex_wake_all(&self->header->space_futex);
    }
    return PyLong_FromLong(self->busy);
}

static PyObject *Ring_busy(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->busy);
}

/* The roles of a slot reserved for a forked child end (the parent's end of
 * the conversation closes for good, and the child was a bystander). */
static PyObject *Ring_revoke_slot(RingObject *self, PyObject *args)
{
    int index;
    if (!PyArg_ParseTuple(args, "i:_revoke_slot", &index)) {
        return NULL;
    }
    if (self->header != NULL && index >= 0 && index < SLOT_COUNT && index != self->slot) {
        __atomic_store_n(&self->slots[index].roles, 0, __ATOMIC_SEQ_CST);
    }
    Py_RETURN_NONE;
}

/* Leave: free our slot and, if we were the last producer (consumer) and announce
 * is true, tell the consumers (producers) that the ring was closed. Without
 * announce, the roles are being handed to another process, which takes them
 * when it starts: peers go on waiting. Then drop the mapping. */
static PyObject *Ring_detach(RingObject *self, PyObject *args)
{
    int announce = 1;
    if (!PyArg_ParseTuple(args, "|p:_detach", &announce)) {
        return NULL;
    }
    struct ring_header *header = self->header;
    if (header != NULL && self->slot >= 0) {
        struct ring_slot *slot = &self->slots[self->slot];
        uint32_t roles = LOAD(&slot->roles);
        STORE_RELAXED(&slot->roles, 0);
        __atomic_store_n(&slot->state, SLOT_FREE, __ATOMIC_SEQ_CST);
        self->slot = -1;
        struct census census;
        take_census(self, &census);
        if (!announce) {
            roles = 0;
        }
        if ((roles & ROLE_PRODUCER) && census.producers == 0) {
            raise_event(&header->producer_event, EVENT_CLOSED);
            futex_wake_all(&header->data_futex);
        }
        if ((roles & ROLE_CONSUMER) && census.consumers == 0) {
            raise_event(&header->consumer_event, EVENT_CLOSED);
            futex_wake_all(&header->space_futex);
        }
    }
    self->header = NULL;
    self->slots = NULL;
    self->data = NULL;
    self->slot = -1;
    if (self->has_buffer) {
        PyBuffer_Release(&self->buffer);
        self->has_buffer = 0;
    }
    Py_RETURN_NONE;
}

/* (capacity, used bytes, messages waiting, producers, consumers, attached handles) */
static PyObject *Ring_snapshot(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ring_enter(self) < 0) {
        return NULL;
    }
    struct ring_header *header = self->header;
    struct census census;
    take_census(self, &census);
    uint64_t free_position = LOAD(&header->free);
    uint64_t head = LOAD(&header->head);
    uint64_t tail = LOAD(&header->tail);
    uint64_t messages = 0;
    uint64_t position = head;
    for (uint64_t steps = 0; position < tail && steps < self->capacity / RECORD_HEADER; steps++) {
        uint32_t length;
        uint64_t size;
        int kind = peek(self, position, &length, &size);
        if (kind == PEEK_EMPTY || kind == PEEK_BAD) {
            break;
        }
        messages += kind == PEEK_MESSAGE;
        position += size;
    }
    ring_leave(self);
    return Py_BuildValue("KKKiii", (unsigned long long)self->capacity,
                         (unsigned long long)(tail >= free_position ? tail - free_position : 0),
                         (unsigned long long)messages, census.producers, census.consumers,
                         census.attached);
}

static PyObject *Ring_get_max_message_size(RingObject *self, void *Py_UNUSED(closure))
{
    if (self->description == NULL) {
        PyErr_SetString(PyExc_ValueError, "the ring is not attached");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(self->max_message);
}

static PyObject *Ring_get_capacity(RingObject *self, void *Py_UNUSED(closure))
{
    if (self->description == NULL) {
        PyErr_SetString(PyExc_ValueError, "the ring is not attached");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(self->capacity);
}

static void Ring_dealloc(RingObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->has_buffer) {
        PyBuffer_Release(&self->buffer);
        self->has_buffer = 0;
    }
    Py_CLEAR(self->description);
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static int Ring_traverse(RingObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    if (self->has_buffer) {
        Py_VISIT(self->buffer.obj);
    }
    return 0;
}

#define VECTOR_METHOD(name, function, doc)                                                        \
    {name, (PyCFunction)(void (*)(void))(function), METH_FASTCALL | METH_KEYWORDS, doc}

static PyMethodDef Ring_methods[] = {
    VECTOR_METHOD("send", Ring_send,
                  "send($self, /, data, *, timeout=None)\n--\n\n"
                  "Append one message (any bytes-like object) to the ring, waiting for space.\n\n"
                  "Raises:\n"
                  "    MessageTooLarge: data is longer than max_message_size (nothing sent).\n"
                  "    WouldBlock: timeout=0 and the ring is full.\n"
                  "    TimeoutExpired: still full when the timeout ran out.\n"
                  "    EndOfChannel, PeerDied: the ring is full and every consumer closed it\n"
                  "        (or is gone, one of them by dying).\n"
                  "    ClosedResourceError: this handle is closed."),
    VECTOR_METHOD("send_many", Ring_send_many,
                  "send_many($self, /, messages, *, timeout=None)\n--\n\n"
                  "Append every message of an iterable, in order, claiming space for as many\n"
                  "as fit at once. Every message is checked before any is sent.\n\n"
                  "Raises:\n"
                  "    MessageTooLarge: one message is too long (nothing sent).\n"
                  "    WouldBlock, TimeoutExpired, EndOfChannel, PeerDied: as send(); the\n"
                  "        exception's messages_sent tells how many went out.\n"
                  "    ClosedResourceError: this handle is closed."),
    VECTOR_METHOD("receive", Ring_receive,
                  "receive($self, /, *, timeout=None)\n--\n\n"
                  "Take the next message, waiting for one.\n\n"
                  "Raises:\n"
                  "    WouldBlock: timeout=0 and the ring is empty.\n"
                  "    TimeoutExpired: still empty when the timeout ran out.\n"
                  "    EndOfChannel: empty, and the last producer closed the ring.\n"
                  "    PeerDied: empty, and every producer is gone, one of them by dying.\n"
                  "    ClosedResourceError: this handle is closed."),
    VECTOR_METHOD("receive_into", Ring_receive_into,
                  "receive_into($self, /, buffer, *, timeout=None)\n--\n\n"
                  "Copy the next message into a writable buffer; return its length.\n\n"
                  "Raises:\n"
                  "    MessageTooLarge: the message is longer than the buffer (it stays).\n"
                  "    WouldBlock, TimeoutExpired, EndOfChannel, PeerDied,\n"
                  "    ClosedResourceError: as receive()."),
    VECTOR_METHOD("receive_many", Ring_receive_many,
                  "receive_many($self, /, max_count, *, timeout=None)\n--\n\n"
                  "Wait for at least one message, then take up to max_count that are ready\n"
                  "(beyond the first, at most a quarter of the capacity per call).\n\n"
                  "Raises:\n"
                  "    WouldBlock, TimeoutExpired, EndOfChannel, PeerDied,\n"
                  "    ClosedResourceError: as receive()."),
    VECTOR_METHOD("_view_take", Ring_view_take,
                  "_view_take($self, /, *, timeout=None)\n--\n\nClaim one message for receive_view()."),
    {"_view_release", (PyCFunction)Ring_view_release, METH_NOARGS,
     "Give back the message of receive_view()."},
    {"_attach", (PyCFunction)Ring_attach, METH_VARARGS,
     "_attach(buffer, lock_fd, description): check the layout and keep the mapping."},
    {"_take_slot", (PyCFunction)Ring_take_slot, METH_VARARGS,
     "_take_slot(lock_fd) -> int: take a slot (-1 if none is free)."},
    {"_declare", (PyCFunction)Ring_declare, METH_VARARGS, "_declare(roles): publish roles."},
    {"_forked", (PyCFunction)Ring_forked, METH_NOARGS, "Forget the parent's slot after fork."},
    {"_reserve_for_child", (PyCFunction)Ring_reserve_for_child, METH_VARARGS,
     "_reserve_for_child(lock_fd, extra_roles=0) -> int: before fork, a slot with our roles "
     "(-1: none)."},
    {"_adopt_slot", (PyCFunction)Ring_adopt_slot, METH_VARARGS,
     "_adopt_slot(index, lock_fd): after fork, in the child, make the reserved slot ours."},
    {"_begin_close", (PyCFunction)Ring_begin_close, METH_NOARGS,
     "Make waiting calls give up; return how many are in progress."},
    {"_busy", (PyCFunction)Ring_busy, METH_NOARGS, "How many calls are in progress."},
    {"_detach", (PyCFunction)Ring_detach, METH_VARARGS,
     "_detach(announce=True): leave the ring; announce closes our roles for peers."},
    {"_revoke_slot", (PyCFunction)Ring_revoke_slot, METH_VARARGS,
     "_revoke_slot(index): end the roles of a slot reserved for a child."},
    {"_snapshot", (PyCFunction)Ring_snapshot, METH_NOARGS,
     "(capacity, used, messages, producers, consumers, attached)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Ring_getset[] = {
    {"max_message_size", (getter)Ring_get_max_message_size, NULL,
     "The largest message this ring carries (half its capacity, less a 16-byte header).", NULL},
    {"capacity", (getter)Ring_get_capacity, NULL, "Bytes of message space in the ring.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Ring_slots[] = {
    {Py_tp_doc, "The native half of unixipc.Ring (private): the mapped ring and its hot path."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, Ring_dealloc},
    {Py_tp_traverse, Ring_traverse},
    {Py_tp_methods, Ring_methods},
    {Py_tp_getset, Ring_getset},
    {0, NULL},
};

static PyType_Spec Ring_spec = {
    .name = "unixipc._native.RingCore",
    .basicsize = sizeof(RingObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Ring_slots,
};

/* ------------------------------------------------------------------ module functions */

/* ring_initialize(buffer, capacity, key): lay out a fresh, zero-filled object.
 * The magic number is stored last, so that an opener never sees half a ring. */
static PyObject *native_ring_initialize(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer buffer;
    unsigned long long capacity, key;
    if (!PyArg_ParseTuple(args, "w*KK:ring_initialize", &buffer, &capacity, &key)) {
        return NULL;
    }
    if (capacity < MIN_CAPACITY || capacity > MAX_CAPACITY || capacity % LINE != 0 ||
        (uint64_t)buffer.len < DATA_OFFSET + capacity) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "capacity does not fit the buffer or the limits");
        return NULL;
    }
    struct ring_header *header = buffer.buf;
    memset(buffer.buf, 0, DATA_OFFSET);
    header->version = RING_VERSION;
    header->header_bytes = HEADER_BYTES;
    header->capacity = capacity;
    header->data_offset = DATA_OFFSET;
    header->slot_count = SLOT_COUNT;
    header->slot_bytes = SLOT_BYTES;
    header->key = key & ~(uint64_t)(RECORD_ALIGN - 1);
    header->max_message = capacity / 2 - RECORD_HEADER;
    __atomic_store_n(&header->magic, RING_MAGIC, __ATOMIC_SEQ_CST);
    PyBuffer_Release(&buffer);
    Py_RETURN_NONE;
}

static PyObject *native_ring_test_stop(PyObject *Py_UNUSED(module), PyObject *args)
{
    int point;
    if (!PyArg_ParseTuple(args, "i:ring_test_stop", &point)) {
        return NULL;
    }
    test_stop_point = point;
    Py_RETURN_NONE;
}

static PyMethodDef ring_functions[] = {
    {"ring_initialize", native_ring_initialize, METH_VARARGS,
     "ring_initialize(buffer, capacity, key) -> None\n\n"
     "Lay out a ring in zero-filled memory; the magic number is written last."},
    {"ring_test_stop", native_ring_test_stop, METH_VARARGS,
     "ring_test_stop(point) -> None\n\n"
     "Tests only: SIGSTOP this process when it reaches the given point (0: never)."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_ring(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec((PyObject *)module, &Ring_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "RingCore", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    if (PyModule_AddFunctions(module, ring_functions) < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "RING_DATA_OFFSET", DATA_OFFSET) < 0 ||
        PyModule_AddIntConstant(module, "RING_MIN_CAPACITY", MIN_CAPACITY) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "RING_MAX_CAPACITY", (long)MAX_CAPACITY);
}
