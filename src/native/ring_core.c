/* The shared-memory ring's algorithm: claim, commit, consume, wait and recover.
 *
 * System calls: futex (FUTEX_WAIT_BITSET with an absolute CLOCK_MONOTONIC
 * deadline, FUTEX_WAKE; shared, not private, so they work across processes),
 * fcntl (F_OFD_SETLK, F_OFD_GETLK: one lock byte per attached handle is its
 * liveness token, released by the kernel when the process dies), getpid,
 * clock_gettime.
 *
 * Layout and protocol (docs/design.md, "The shared-memory ring") in short:
 *   header (4 KiB): layout line written once (magic last), then tail, head and
 *   free positions and the futex words, each on its own cache line;
 *   128 slots of 64 bytes: one per attached handle (state, roles, pid, waiter
 *   counts, and the position ranges it is claiming, reading or viewing);
 *   data: `capacity` bytes of records. Positions grow forever (below 2^63); a
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
 *
 * Defensive reading: free <= head <= tail always holds, and loads made in that
 * order see it too (each position only grows, and is only moved up to what the
 * mover saw of the next one); positions are 16-aligned and below 2^63; a record
 * header is checked against the room left in its lap before its size or length
 * is used, and only the checked copy is used afterwards. Two states are only
 * suspected at first and reported when a second look at least SUSPECT_NS later
 * finds them unchanged: an uncommitted record at the head that no producer
 * claims, and a record at free that no consumer holds or that is not a record.
 */
#define _GNU_SOURCE
#include "ring_core.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The lock byte that serializes recovery (slot i's liveness byte is i). */
#define RECOVERY_LOCK_BYTE RING_SLOT_COUNT

#define KIND_MESSAGE 1ULL
#define KIND_PADDING 2ULL
#define KIND_CONSUMED 4ULL

#define SLOT_FREE 0U
#define SLOT_ATTACHED 1U
#define SLOT_DEAD 2U /* died; kept until no position it held can still matter */

#define EVENT_NONE 0U
#define EVENT_CLOSED 1U
#define EVENT_DIED 2U

#define WAITING_DATA 1U
#define WAITING_SPACE (1U << 16)

#define HELD_SPIN_NS 2000 /* first look with the caller's lock (the GIL) held */
#define SPIN_MIN_NS 4000
#define SPIN_START_NS 50000
#define SPIN_MAX_NS 150000
/* Woken this soon after the spin gave up: the peer most likely needed our CPU. */
#define SAME_CPU_NS 50000
/* Then this many waits sleep at once before spinning is tried again. */
#define SLEEP_FIRST_WAITS 16
#define SLICE_NS 200000000LL     /* a sleeper checks its peers' liveness this often */
#define POLL_CHECK_NS 50000000LL /* timeout=0 callers check liveness at most this often */
#define SUSPECT_NS 100000000LL   /* a suspicion of damage must last this long */

int ring_test_stop_point;

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define CAS(p, expected, desired)                                                                 \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_SEQ_CST,                 \
                                __ATOMIC_ACQUIRE)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------ small helpers */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

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
    return (RING_RECORD_HEADER + length + RING_RECORD_ALIGN - 1) &
           ~(uint64_t)(RING_RECORD_ALIGN - 1);
}

/* The tag of the record at `position` without its kind bits: the position and
 * the ring's random key through a bijective 64-bit mixer (splitmix64's finalizer),
 * so that tags of different positions differ in about half of their bits. */
static inline uint64_t tag_base(const struct ring *ring, uint64_t position)
{
    uint64_t z = position ^ ring->key;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z & ~(uint64_t)(RING_RECORD_ALIGN - 1);
}

static inline uint64_t make_tag(const struct ring *ring, uint64_t position, uint64_t kind)
{
    return tag_base(ring, position) | kind;
}

/* A position that may be used to address a record: 16-aligned (so a whole
 * record header fits before the end of the lap) and below the limit. */
static inline int position_ok(uint64_t position)
{
    return position % RING_RECORD_ALIGN == 0 && position < RING_POSITION_LIMIT;
}

/* Only for positions that passed position_ok. */
static inline struct ring_record *record_at(const struct ring *ring, uint64_t position)
{
    return (struct ring_record *)(ring->data + position % ring->capacity);
}

static inline uint64_t room_in_lap(const struct ring *ring, uint64_t position)
{
    return ring->capacity - position % ring->capacity;
}

static inline void maybe_stop(int point)
{
    if (UNLIKELY(ring_test_stop_point == point)) {
        raise(SIGSTOP);
    }
}

static int corrupt(struct ring *ring, const char *what, uint64_t position)
{
    ring->problem = what;
    ring->problem_position = position;
    return RING_CORRUPT;
}

/* A suspected state seen again (same position and tag) at least SUSPECT_NS after
 * it was first seen: report it. Otherwise remember it and go on. */
static int suspect(struct ring *ring, struct ring_suspicion *suspicion, const char *what,
                   uint64_t position, uint64_t tag)
{
    int64_t now = now_ns();
    if (suspicion->since_ns != 0 && suspicion->position == position && suspicion->tag == tag) {
        if (now - suspicion->since_ns >= SUSPECT_NS) {
            suspicion->since_ns = 0;
            return corrupt(ring, what, position);
        }
        return RING_OK;
    }
    suspicion->position = position;
    suspicion->tag = tag;
    suspicion->since_ns = now;
    return RING_OK;
}

static long futex_wait_until(uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
    struct timespec at = {.tv_sec = (time_t)(deadline_ns / 1000000000),
                          .tv_nsec = (long)(deadline_ns % 1000000000)};
    return syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, &at, NULL,
                   FUTEX_BITSET_MATCH_ANY);
}

static void futex_wake(uint32_t *word, int count)
{
    __atomic_fetch_add(word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

/* Take one direction's doorbell masks and ring every armed handle's doorbell.
 * The names are copied out of the shared memory first: a hostile process can
 * only make us send empty datagrams to other doorbells (a look, for them). */
static void ring_bells(struct ring *ring, struct ring_wake *wake)
{
    for (int word = 0; word < RING_BELL_WORDS; word++) {
        if (__atomic_load_n(&wake->bells[word], __ATOMIC_SEQ_CST) == 0) {
            continue;
        }
        uint64_t bits = __atomic_exchange_n(&wake->bells[word], 0, __ATOMIC_SEQ_CST);
        while (bits != 0) {
            int index = word * 64 + __builtin_ctzll(bits);
            bits &= bits - 1;
            if (ring->bells != NULL && ring->bells->ring != NULL && index < RING_SLOT_COUNT) {
                unsigned char id[RING_BELL_ID_BYTES];
                memcpy(id, ring->header->bell_ids[index], sizeof id);
                ring->bells->ring(ring->bells->context, id);
            }
        }
    }
}

/* Wake every sleeper of one direction (closes, deaths, repairs): futex and doorbells. */
static void wake_all(struct ring *ring, struct ring_wake *wake)
{
    futex_wake(&wake->futex, INT_MAX);
    ring_bells(ring, wake);
}

/* A commit's wake-up, past the fast check: the one committer that takes the
 * armed word makes the FUTEX_WAKE (after noting its CPU for the sleeper), and
 * armed doorbells are rung. */
static void wake_slow(struct ring *ring, struct ring_wake *wake, int count)
{
    if (__atomic_load_n(&wake->armed, __ATOMIC_SEQ_CST) != 0 &&
        __atomic_exchange_n(&wake->armed, 0, __ATOMIC_SEQ_CST) != 0) {
        int cpu = sched_getcpu();
        STORE_RELAXED(&wake->waker_cpu, cpu < 0 ? 0U : (uint32_t)cpu + 1);
        futex_wake(&wake->futex, count);
    }
    ring_bells(ring, wake);
}

/* After a seq_cst commit (Dekker with the sleeper, which arms and then looks):
 * loads only, unless someone is armed. */
static inline void wake_side(struct ring *ring, struct ring_wake *wake, int count)
{
    uint32_t armed = __atomic_load_n(&wake->armed, __ATOMIC_SEQ_CST);
    uint64_t bells = __atomic_load_n(&wake->bells[0], __ATOMIC_SEQ_CST) |
                     __atomic_load_n(&wake->bells[1], __ATOMIC_SEQ_CST);
    if (UNLIKELY(armed != 0 || bells != 0)) {
        wake_slow(ring, wake, count);
    }
}

static inline void bell_disarm(struct ring_wake *wake, int index)
{
    __atomic_fetch_and(&wake->bells[index / 64], ~((uint64_t)1 << (index % 64)),
                       __ATOMIC_SEQ_CST);
}

static inline void waiter_unlock(const struct ring_waiter *waiter)
{
    if (waiter != NULL && waiter->unlock != NULL) {
        waiter->unlock(waiter->context);
    }
}

static inline void waiter_lock(const struct ring_waiter *waiter)
{
    if (waiter != NULL && waiter->lock != NULL) {
        waiter->lock(waiter->context);
    }
}

/* ------------------------------------------------------------------ positions */

struct positions {
    uint64_t free, head, tail;
};

/* A consistent look at free, head and tail, loaded in that order (so that
 * free <= head <= tail holds for what was read, whatever moves meanwhile), then
 * free once more: when that fresher free is still behind the tail read, it is
 * used, and tail - free <= capacity must hold for it. Anything else is damage.
 * Producers looking for space leave head out (with_head 0): consumers write its
 * line for every message (measured: 4 KiB streaming lost 20%), they check
 * free <= head themselves, and a sleeper checks all three. */
static int read_positions(struct ring *ring, struct positions *out, int with_head)
{
    struct ring_header *header = ring->header;
    for (int attempt = 0;; attempt++) {
        uint64_t free_position = LOAD(&header->free);
        uint64_t head = with_head ? LOAD(&header->head) : free_position;
        uint64_t tail = LOAD(&header->tail);
        uint64_t fresher = LOAD(&header->free);
        if (!position_ok(free_position) || !position_ok(fresher)) {
            return corrupt(ring, "free is misaligned or out of range", free_position);
        }
        if (!position_ok(head)) {
            return corrupt(ring, "head is misaligned or out of range", head);
        }
        if (!position_ok(tail)) {
            return corrupt(ring, "tail is misaligned or out of range", tail);
        }
        if (free_position > head) {
            return corrupt(ring, "free is past head", free_position);
        }
        if (free_position > tail) {
            return corrupt(ring, "free is past tail", free_position);
        }
        if (head > tail) {
            return corrupt(ring, "head is past tail", head);
        }
        if (fresher < free_position) {
            return corrupt(ring, "free moved backwards", fresher);
        }
        if (fresher <= tail || attempt == 64) {
            /* After many tries (consumers passing each tail we read: a ring busy in
             * every way), the first free serves: older, so only more cautious. */
            out->free = fresher <= tail ? fresher : free_position;
            out->head = head;
            out->tail = tail;
            if (tail - out->free > ring->capacity) {
                return corrupt(ring, "more than the capacity is in use", tail);
            }
            return RING_OK;
        }
    }
}

/* The consumers' fast look at head: aligned, in range, and not behind what this
 * handle saw before (it only grows). The rest costs a load of a line that the
 * other side's hardware prefetchers pull away (measured: 100 ns more per round
 * trip), so it is checked where the values come for free: free <= head when
 * records are given back (release_records), all of them whenever a call waits. */
static inline int read_head(struct ring *ring, uint64_t *head)
{
    uint64_t at = LOAD(&ring->header->head);
    if (UNLIKELY(!position_ok(at) || at < ring->seen_head)) {
        struct positions positions;
        int status = read_positions(ring, &positions, 1);
        return status != RING_OK ? status : corrupt(ring, "head moved backwards", at);
    }
    ring->seen_head = at;
    *head = at;
    return RING_OK;
}

/* Damage found by release_records, which cannot report it itself (the records
 * were taken and copied): the next call reports it. */
static inline int damage_found(const struct ring *ring)
{
    return UNLIKELY(ring->damaged) ? RING_CORRUPT : RING_OK;
}

/* ------------------------------------------------------------------ liveness */

static int lock_byte(int fd, int byte, short type)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &lock);
}

/* True unless the slot's lock byte is free: its holder is gone. Errors count as alive. */
static int slot_alive(struct ring *ring, int index)
{
    if (index == ring->slot) {
        return 1;
    }
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = index, .l_len = 1};
    if (fcntl(ring->lock_fd, F_OFD_GETLK, &lock) != 0) {
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
static void bury_slot(struct ring *ring, struct ring_slot *slot)
{
    struct ring_header *header = ring->header;
    uint32_t waiting = __atomic_exchange_n(&slot->waiting, 0, __ATOMIC_SEQ_CST);
    if (waiting & 0xFFFFU) {
        __atomic_fetch_sub(&header->data.waiters, waiting & 0xFFFFU, __ATOMIC_SEQ_CST);
    }
    if (waiting >> 16) {
        __atomic_fetch_sub(&header->space.waiters, waiting >> 16, __ATOMIC_SEQ_CST);
    }
    int index = (int)(slot - ring->slots);
    bell_disarm(&header->data, index);
    bell_disarm(&header->space, index);
    uint32_t roles = LOAD(&slot->roles);
    STORE(&slot->state, SLOT_DEAD);
    if (roles & RING_PRODUCER) {
        raise_event(&header->producer_event, EVENT_DIED);
    }
    if (roles & RING_CONSUMER) {
        raise_event(&header->consumer_event, EVENT_DIED);
    }
    /* Everyone looks again; this also passes on a wake-up that the dead handle
     * took (woken by a wake-one, it died before passing it on). */
    wake_all(ring, &header->data);
    wake_all(ring, &header->space);
}

struct census {
    int producers, consumers, attached;
};

/* Count the live handles by role; bury the dead ones found on the way. */
static void take_census(struct ring *ring, struct census *census)
{
    census->producers = census->consumers = census->attached = 0;
    for (int i = 0; i < RING_SLOT_COUNT; i++) {
        struct ring_slot *slot = &ring->slots[i];
        if (LOAD(&slot->state) != SLOT_ATTACHED) {
            continue;
        }
        if (!slot_alive(ring, i)) {
            if (lock_byte(ring->lock_fd, i, F_WRLCK) == 0) {
                if (LOAD(&slot->state) == SLOT_ATTACHED) {
                    bury_slot(ring, slot);
                }
                lock_byte(ring->lock_fd, i, F_UNLCK);
            }
            continue;
        }
        uint32_t roles = LOAD(&slot->roles);
        census->attached++;
        census->producers += (roles & RING_PRODUCER) != 0;
        census->consumers += (roles & RING_CONSUMER) != 0;
    }
}

/* A dead slot can be reused once every position it claimed, read or viewed is free. */
static int slot_settled(struct ring *ring, struct ring_slot *slot)
{
    uint64_t free_position = LOAD(&ring->header->free);
    return LOAD(&slot->claim_end) <= free_position && LOAD(&slot->read_end) <= free_position &&
           LOAD(&slot->view_end) <= free_position;
}

/* ------------------------------------------------------------------ records */

enum { PEEK_EMPTY, PEEK_MESSAGE, PEEK_PADDING, PEEK_BAD };

/* A record header as read once and checked. */
struct seen {
    uint64_t position;
    uint32_t length, size;
    int kind; /* PEEK_MESSAGE or PEEK_PADDING */
};

/* What is committed at `position` (which passed position_ok): nothing yet, a
 * message, padding, or a header that breaks the layout. */
static inline int peek(const struct ring *ring, uint64_t position, struct seen *seen)
{
    struct ring_record *record = record_at(ring, position);
    uint64_t tag = LOAD(&record->tag);
    uint64_t base = tag_base(ring, position);
    int kind;
    if (tag == (base | KIND_MESSAGE)) {
        kind = PEEK_MESSAGE;
    } else if (tag == (base | KIND_PADDING)) {
        kind = PEEK_PADDING;
    } else {
        return PEEK_EMPTY;
    }
    uint32_t size = LOAD_RELAXED(&record->size);
    uint32_t length = LOAD_RELAXED(&record->length);
    if (size < RING_RECORD_HEADER || size % RING_RECORD_ALIGN != 0 ||
        size > room_in_lap(ring, position)) {
        return PEEK_BAD;
    }
    if (kind == PEEK_MESSAGE ? length > ring->max_message || record_size(length) != size
                             : length != 0) {
        return PEEK_BAD;
    }
    seen->position = position;
    seen->length = length;
    seen->size = size;
    seen->kind = kind;
    return kind;
}

/* Consumers all wait for the same thing (a message at the head): one is woken
 * per arming, and it passes the wake-up on (ring_wait, pass_on). Producers wait
 * for different amounts of space: all are woken. */
static inline void wake_readers(struct ring *ring)
{
    wake_side(ring, &ring->header->data, 1);
}

static inline void wake_writers(struct ring *ring)
{
    wake_side(ring, &ring->header->space, INT_MAX);
}

/* The size of the consumed record at `position`, or 0 if its header is not a
 * consumed record's (or breaks the layout). */
static uint64_t consumed_size(const struct ring *ring, uint64_t position)
{
    struct ring_record *record = record_at(ring, position);
    uint64_t tag = LOAD(&record->tag);
    uint64_t base = tag_base(ring, position);
    if (tag != (base | KIND_MESSAGE | KIND_CONSUMED) &&
        tag != (base | KIND_PADDING | KIND_CONSUMED)) {
        return 0;
    }
    uint64_t size = LOAD_RELAXED(&record->size);
    if (size < RING_RECORD_HEADER || size % RING_RECORD_ALIGN != 0 ||
        size > room_in_lap(ring, position)) {
        return 0;
    }
    return size;
}

/* Move free over records (messages and padding) that their readers marked consumed.
 * Padding too must be marked: until its reader is done with the claim that covers
 * it, no one may free it (the reader still walks the record headers there). */
static void sweep_free(struct ring *ring, uint64_t position)
{
    struct ring_header *header = ring->header;
    for (;;) {
        uint64_t head = LOAD(&header->head);
        if (!position_ok(position) || position >= head) {
            return;
        }
        uint64_t size = consumed_size(ring, position);
        if (size != 0) {
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
            return; /* the oldest record is still being read (or damaged: a check reports it) */
        }
        position = current;
    }
}

/* Give back the records [start, end) this handle claimed and has finished with:
 * `records` are their headers as checked when they were claimed. */
static void release_records(struct ring *ring, uint64_t start, uint64_t end,
                            const struct seen *records, size_t count)
{
    struct ring_header *header = ring->header;
    uint64_t expected = start;
    if (CAS(&header->free, &expected, end)) {
        sweep_free(ring, end);
    } else if (expected > start) {
        /* free passed records that we still held: impossible unless damaged. */
        ring->damaged = 1;
        corrupt(ring, "free passed records being read", expected);
    } else {
        /* An older record is still being read: mark ours for its reader to sweep
         * (once marked, a record may be freed and overwritten at once). */
        for (size_t i = 0; i < count; i++) {
            uint64_t kind = records[i].kind == PEEK_MESSAGE ? KIND_MESSAGE : KIND_PADDING;
            uint64_t tag = make_tag(ring, records[i].position, kind);
            CAS(&record_at(ring, records[i].position)->tag, &tag, tag | KIND_CONSUMED);
        }
        sweep_free(ring, LOAD(&header->free));
    }
    wake_writers(ring);
}

/* ------------------------------------------------------------------ recovery */

/* Hold the recovery lock while repairing what a dead process left; returns 0 if taken. */
static int recovery_lock(struct ring *ring)
{
    return lock_byte(ring->lock_fd, RECOVERY_LOCK_BYTE, F_WRLCK);
}

static void recovery_unlock(struct ring *ring)
{
    lock_byte(ring->lock_fd, RECOVERY_LOCK_BYTE, F_UNLCK);
}

enum { OWNER_NONE, OWNER_LIVE, OWNER_DEAD, OWNER_BAD };

/* Who claims the uncommitted record at `position`: a live producer; only dead
 * ones (*end: the end of the smallest such claim: the true owner's reaches at
 * least that far); nobody; or a dead producer whose published claim breaks the
 * layout. */
static int claim_owner(struct ring *ring, uint64_t position, uint64_t *end)
{
    uint64_t smallest = 0;
    int bad = 0;
    for (int i = 0; i < RING_SLOT_COUNT; i++) {
        struct ring_slot *slot = &ring->slots[i];
        uint32_t state = LOAD(&slot->state);
        if (state == SLOT_FREE) {
            continue;
        }
        uint64_t start = LOAD(&slot->claim_start), claim_end = LOAD(&slot->claim_end);
        if (!(start <= position && position < claim_end)) {
            continue;
        }
        if (state == SLOT_ATTACHED && slot_alive(ring, i)) {
            return OWNER_LIVE; /* still being written */
        }
        if (!position_ok(claim_end) || claim_end - position > ring->capacity) {
            bad = 1;
        } else if (smallest == 0 || claim_end < smallest) {
            smallest = claim_end;
        }
    }
    *end = smallest;
    return bad ? OWNER_BAD : smallest != 0 ? OWNER_DEAD : OWNER_NONE;
}

/* The record at the head is claimed (head < tail) but not committed. Its dead
 * producer's unfinished record becomes padding (up to the end of its claim or
 * of the lap; what is left is handled on a later call, once readers have passed
 * this). A record that nobody claims is damage (reported once it lasts). */
static int recover_dead_claims(struct ring *ring)
{
    struct ring_header *header = ring->header;
    if (recovery_lock(ring) != 0) {
        return RING_OK; /* another process is recovering */
    }
    struct positions positions;
    int status = read_positions(ring, &positions, 1);
    int padded = 0;
    uint64_t position = positions.head;
    if (status == RING_OK && position < positions.tail) {
        struct ring_record *record = record_at(ring, position);
        /* One load decides "uncommitted": a separate look could see a commit made
         * just before the owner died, and padding would then swallow its messages. */
        uint64_t seen = LOAD(&record->tag);
        if (seen != make_tag(ring, position, KIND_MESSAGE) &&
            seen != make_tag(ring, position, KIND_PADDING)) {
            uint64_t end = 0;
            int owner = claim_owner(ring, position, &end);
            /* The owner (if any) may have committed since `seen`: look again. */
            int unchanged = LOAD(&record->tag) == seen && LOAD(&header->head) == position;
            if (owner == OWNER_BAD && unchanged) {
                status = corrupt(ring, "a dead producer's claim is invalid", position);
            } else if (owner == OWNER_NONE && unchanged) {
                status = suspect(ring, &ring->head_suspicion,
                                 "the record at the head is neither committed nor claimed",
                                 position, seen);
            } else if (owner == OWNER_DEAD && unchanged) {
                /* Once its owner is known dead, the tag is final: if it is still
                 * `seen`, the record was never committed, so the head is still
                 * stopped at it and no one else writes or frees it. */
                uint64_t lap_end = position - position % ring->capacity + ring->capacity;
                if (end > lap_end) {
                    end = lap_end;
                }
                STORE_RELAXED(&record->length, 0);
                STORE_RELAXED(&record->size, (uint32_t)(end - position));
                padded = CAS(&record->tag, &seen, make_tag(ring, position, KIND_PADDING));
            }
        }
    }
    recovery_unlock(ring);
    if (padded) {
        wake_all(ring, &header->data);
    }
    return status;
}

enum { HOLDER_NONE, HOLDER_LIVE, HOLDER_DEAD };

/* Who holds the committed record at `position` (behind the head): a live
 * consumer reading or viewing it, only dead ones, or nobody. */
static int record_holder(struct ring *ring, uint64_t position)
{
    int held = HOLDER_NONE;
    for (int i = 0; i < RING_SLOT_COUNT; i++) {
        struct ring_slot *slot = &ring->slots[i];
        uint32_t state = LOAD(&slot->state);
        if (state == SLOT_FREE) {
            continue;
        }
        int holds = (LOAD(&slot->read_start) <= position && position < LOAD(&slot->read_end)) ||
                    (LOAD(&slot->view_start) <= position && position < LOAD(&slot->view_end));
        if (!holds) {
            continue;
        }
        if (state == SLOT_ATTACHED && slot_alive(ring, i)) {
            return HOLDER_LIVE;
        }
        held = HOLDER_DEAD;
    }
    return held;
}

/* Records that dead consumers claimed but never gave back hold free still:
 * mark them consumed so free moves on. A record at free that is neither held
 * nor a record is damage (reported once it lasts). */
static int recover_dead_readers(struct ring *ring)
{
    struct ring_header *header = ring->header;
    if (recovery_lock(ring) != 0) {
        return RING_OK;
    }
    int status = RING_OK;
    int reclaimed = 0;
    for (int round = 0; round < 64 && status == RING_OK; round++) {
        struct positions positions;
        status = read_positions(ring, &positions, 1);
        uint64_t position = positions.free;
        if (status != RING_OK || position >= positions.head) {
            break;
        }
        struct ring_record *record = record_at(ring, position);
        uint64_t tag = LOAD(&record->tag);
        uint64_t base = tag_base(ring, position);
        if (tag == (base | KIND_MESSAGE | KIND_CONSUMED) ||
            tag == (base | KIND_PADDING | KIND_CONSUMED)) {
            sweep_free(ring, position);
            if (LOAD(&header->free) != position) {
                continue;
            }
            status = suspect(ring, &ring->free_suspicion,
                             "a consumed record at free has an invalid size", position, tag);
            break;
        }
        if (tag != (base | KIND_MESSAGE) && tag != (base | KIND_PADDING)) {
            if (LOAD(&header->free) == position) {
                status = suspect(ring, &ring->free_suspicion, "free is not at a record",
                                 position, tag);
                break;
            }
            continue; /* freed meanwhile: look again at the new free */
        }
        int holder = record_holder(ring, position);
        /* A live reader that finished with the record between our look at free and
         * at the slots no longer covers it, but it moved free past it or marked it:
         * free and the tag unchanged mean its holder is dead (or that nobody ever
         * held it), and only we may mark it (marking a record already freed could
         * corrupt a message written over it). */
        int unchanged = LOAD(&header->free) == position && LOAD(&record->tag) == tag;
        if (holder == HOLDER_LIVE || !unchanged) {
            if (holder == HOLDER_LIVE) {
                break;
            }
            continue;
        }
        if (holder == HOLDER_NONE) {
            status = suspect(ring, &ring->free_suspicion,
                             "a committed record at free is held by no consumer", position, tag);
            break;
        }
        if (!CAS(&record->tag, &tag, tag | KIND_CONSUMED)) {
            continue;
        }
        reclaimed = 1;
        sweep_free(ring, position);
    }
    recovery_unlock(ring);
    if (reclaimed) {
        wake_all(ring, &header->space);
    }
    return status;
}

/* ------------------------------------------------------------------ waiting */

enum { WAIT_FOR_DATA, WAIT_FOR_SPACE };

static int data_ready(struct ring *ring, uint64_t unused)
{
    (void)unused;
    uint64_t head = LOAD(&ring->header->head);
    if (!position_ok(head)) {
        return 1; /* let the caller take a careful look */
    }
    uint64_t tag = LOAD(&record_at(ring, head)->tag);
    uint64_t base = tag_base(ring, head);
    return tag == (base | KIND_MESSAGE) || tag == (base | KIND_PADDING);
}

static int space_ready(struct ring *ring, uint64_t size)
{
    uint64_t free_position = LOAD(&ring->header->free);
    uint64_t tail = LOAD(&ring->header->tail);
    if (!position_ok(tail) || free_position > tail || tail - free_position > ring->capacity) {
        return 1; /* moving under us, or damaged: let the caller take a careful look */
    }
    uint64_t offset = tail % ring->capacity;
    uint64_t padding = offset + size > ring->capacity ? ring->capacity - offset : 0;
    return tail + padding + size - free_position <= ring->capacity;
}

/* Are the peers this wait depends on gone? Repairs what dead ones left first,
 * and looks for damage. Returns RING_OK if waiting should go on (or retry). */
static int check_peers(struct ring *ring, int for_space, uint64_t size)
{
    struct ring_header *header = ring->header;
    struct census census;
    take_census(ring, &census);
    int status = recover_dead_readers(ring);
    if (status == RING_OK) {
        status = recover_dead_claims(ring);
    }
    if (status != RING_OK) {
        return status;
    }
    uint32_t event;
    if (for_space) {
        if (census.consumers > 0 || space_ready(ring, size)) {
            return RING_OK;
        }
        event = LOAD(&header->consumer_event) & 3U;
    } else {
        if (census.producers > 0 || data_ready(ring, 0) ||
            LOAD(&header->tail) != LOAD(&header->head)) {
            return RING_OK;
        }
        event = LOAD(&header->producer_event) & 3U;
    }
    return event == EVENT_DIED     ? RING_PEER_DIED
           : event == EVENT_CLOSED ? RING_PEER_CLOSED
                                   : RING_OK;
}

/* For timeout=0: check the peers at most every POLL_CHECK_NS (or when an event was raised). */
static int poll_peers(struct ring *ring, int for_space, uint64_t size)
{
    uint32_t *event_word =
        for_space ? &ring->header->consumer_event : &ring->header->producer_event;
    uint32_t *seen = for_space ? &ring->seen_consumer_event : &ring->seen_producer_event;
    uint32_t event = LOAD(event_word);
    int64_t now = now_ns();
    if (event == *seen && now - ring->last_check_ns < POLL_CHECK_NS) {
        return RING_OK;
    }
    *seen = event;
    ring->last_check_ns = now;
    return check_peers(ring, for_space, size);
}

/* Wait until ready(ring, argument) may hold: spin briefly, then sleep on the futex.
 * Called with the caller's lock held; lets it go while waiting. */
static int ring_wait(struct ring *ring, int for_space, uint64_t argument, int64_t deadline,
                     const struct ring_waiter *waiter)
{
    struct ring_header *header = ring->header;
    int (*ready)(struct ring *, uint64_t) = for_space ? space_ready : data_ready;
    struct ring_wake *wake = for_space ? &header->space : &header->data;
    uint32_t *event_word = for_space ? &header->consumer_event : &header->producer_event;
    uint32_t *seen_event = for_space ? &ring->seen_consumer_event : &ring->seen_producer_event;
    uint32_t waiting_unit = for_space ? WAITING_SPACE : WAITING_DATA;
    struct ring_slot *slot = &ring->slots[ring->slot];
    int result = RING_OK;

    /* When the peer seems to share our CPU, spinning only delays its answer. */
    int spinning = ring->sleep_first == 0;
    if (!spinning) {
        ring->sleep_first--;
    }

    /* Releasing and retaking the GIL costs hundreds of ns: in a ping-pong the
     * answer often comes sooner, so look for a short while with the lock held. */
    if (spinning) {
        int64_t until = now_ns() + HELD_SPIN_NS;
        for (;;) {
            for (int i = 0; i < 16; i++) {
                if (ready(ring, argument)) {
                    return RING_OK;
                }
                cpu_relax();
            }
            if (now_ns() >= until) {
                break;
            }
        }
    }
    waiter_unlock(waiter);

    /* Spin: a message (or space) usually comes within microseconds, and a sleeping
     * core takes tens of microseconds to wake. The spin adapts: it grows when what
     * we waited for came soon after we started, and shrinks when we had to sleep long. */
    int64_t spin = __atomic_load_n(&ring->spin_ns, __ATOMIC_RELAXED);
    int64_t start = now_ns();
    int64_t spin_until = spinning ? start + spin : start;
    if (deadline >= 0 && deadline < spin_until) {
        spin_until = deadline;
    }
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (ready(ring, argument)) {
                goto done;
            }
            cpu_relax();
        }
        if (__atomic_load_n(&ring->closing, __ATOMIC_RELAXED)) {
            result = RING_CLOSED;
            goto done;
        }
        if (now_ns() >= spin_until) {
            break;
        }
    }

    /* Sleep. Before each look, the armed word is set (a full barrier between),
     * and the other side commits before reading it: either it sees the word and
     * wakes us (the futex word moves first, so a wake before our FUTEX_WAIT makes
     * that return at once), or we see its commit. No wake-up is lost. */
    int64_t sleep_start = now_ns();
    __atomic_fetch_add(&wake->waiters, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&slot->waiting, waiting_unit, __ATOMIC_SEQ_CST);
    /* Peers that already left are noticed at once; deaths within a slice. */
    int64_t next_check = (LOAD(event_word) & 3U) != EVENT_NONE ? start : start + SLICE_NS;
    int woken = 0; /* the last FUTEX_WAIT ended by a FUTEX_WAKE */
    for (;;) {
        uint32_t sequence = LOAD(&wake->futex);
        if (LOAD_RELAXED(&wake->armed) == 0) {
            __atomic_store_n(&wake->armed, 1, __ATOMIC_SEQ_CST);
        }
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (ready(ring, argument)) {
            break;
        }
        if (__atomic_load_n(&ring->closing, __ATOMIC_RELAXED)) {
            result = RING_CLOSED;
            break;
        }
        int64_t now = now_ns();
        uint32_t event = LOAD(event_word);
        if (event != *seen_event || now >= next_check) {
            *seen_event = event;
            next_check = now + SLICE_NS;
            ring->last_check_ns = now;
            result = check_peers(ring, for_space, argument);
            if (result != RING_OK) {
                break;
            }
            if (ready(ring, argument)) {
                break;
            }
        }
        if (deadline >= 0 && now >= deadline) {
            result = RING_TIMEOUT;
            break;
        }
        int64_t until = next_check;
        if (deadline >= 0 && deadline < until) {
            until = deadline;
        }
        long slept = futex_wait_until(&wake->futex, sequence, until);
        woken = slept == 0;
        if (slept != 0 && errno == EINTR && waiter != NULL && waiter->interrupted != NULL) {
            waiter_lock(waiter);
            int stop = waiter->interrupted(waiter->context);
            waiter_unlock(waiter);
            if (stop) {
                result = RING_INTERRUPTED;
                break;
            }
        }
    }
    if (woken && !for_space) {
        maybe_stop(RING_STOP_CONSUMER_WOKEN);
    }
    if (!for_space && LOAD(&wake->waiters) > 1) {
        /* Consumers are woken one at a time: whoever leaves while others sleep
         * arms the word for them (before it stops counting as a sleeper, so that
         * if it dies here, burying it wakes everyone), and after taking its
         * message wakes one if more are there (pass_on). */
        __atomic_store_n(&wake->armed, 1, __ATOMIC_SEQ_CST);
        ring->pass_on = 1;
    }
    __atomic_fetch_sub(&slot->waiting, waiting_unit, __ATOMIC_SEQ_CST);
    __atomic_fetch_sub(&wake->waiters, 1, __ATOMIC_SEQ_CST);
    if (spinning) {
        int64_t now = now_ns();
        int64_t waited = now - start;
        int cpu = woken ? sched_getcpu() : -1;
        if (result == RING_OK && now - sleep_start < SAME_CPU_NS && cpu >= 0 &&
            LOAD_RELAXED(&wake->waker_cpu) == (uint32_t)cpu + 1) {
            /* It came as soon as we stopped spinning, from our own CPU: the peer
             * needed this CPU to answer (both pinned to one CPU, or a busy
             * machine), so the spin only delayed it. Measured: a 64 B round trip
             * between two processes pinned to one CPU took 160 us while the spin
             * grew. A wake-up from another CPU says nothing of the kind (a peer
             * preempted for a while): sleeping at once then cost every later
             * round trip a wake-up (design.md, "Where the tail comes from"). */
            ring->sleep_first = SLEEP_FIRST_WAITS;
        } else if (result == RING_OK && waited < SPIN_MAX_NS) {
            spin = waited * 2 > spin * 2 ? waited * 2 : spin * 2;
        } else {
            spin /= 2;
        }
        spin = spin < SPIN_MIN_NS ? SPIN_MIN_NS : spin > SPIN_MAX_NS ? SPIN_MAX_NS : spin;
        __atomic_store_n(&ring->spin_ns, spin, __ATOMIC_RELAXED);
    }
done:
    waiter_lock(waiter);
    return result;
}

/* For timeout=0 and ring_ready(): with a doorbell, drain it, arm it, and look
 * once more. Armed, the doorbell rings when a commit (or freed space) comes.
 * Returns the last look (0 without a doorbell). */
static int arm_bell(struct ring *ring, int for_space, uint64_t argument)
{
    if (!ring->has_bell || ring->bells == NULL) {
        return 0;
    }
    struct ring_wake *wake = for_space ? &ring->header->space : &ring->header->data;
    if (ring->bells->drain != NULL) {
        ring->bells->drain(ring->bells->context);
    }
    __atomic_fetch_or(&wake->bells[ring->slot / 64], (uint64_t)1 << (ring->slot % 64),
                      __ATOMIC_SEQ_CST);
    return for_space ? space_ready(ring, argument) : data_ready(ring, argument);
}

/* Ring our own doorbell: its descriptor is readable at once. */
static void ring_own_bell(struct ring *ring)
{
    if (ring->bells != NULL && ring->bells->ring != NULL) {
        unsigned char id[RING_BELL_ID_BYTES];
        memcpy(id, ring->header->bell_ids[ring->slot], sizeof id);
        ring->bells->ring(ring->bells->context, id);
    }
}

/* A call that found nothing to do: with RING_TRY_ONCE give up (after a look at
 * the peers now and then), else wait. */
static int wait_or_give_up(struct ring *ring, int for_space, uint64_t argument, int64_t deadline,
                           const struct ring_waiter *waiter)
{
    if (deadline == RING_TRY_ONCE) {
        int peers = poll_peers(ring, for_space, argument);
        if (peers != RING_OK) {
            return peers;
        }
        if (arm_bell(ring, for_space, argument)) {
            /* It came while we armed: take it now (once per call), rather than
             * have the caller's event loop come back for it. */
            if (!ring->retried) {
                ring->retried = 1;
                return RING_OK;
            }
            ring_own_bell(ring); /* still not takeable: let the descriptor say "look again" */
        }
        return RING_TIMEOUT;
    }
    return ring_wait(ring, for_space, argument, deadline, waiter);
}

/* A consumer that left a wake-one wait while others slept, after taking its
 * message (or giving up): when more is there, wake the next sleeper (the word
 * was armed for them when we left). */
static void pass_on(struct ring *ring)
{
    ring->pass_on = 0;
    if (data_ready(ring, 0)) {
        wake_side(ring, &ring->header->data, 1);
    }
}

/* ------------------------------------------------------------------ producing */

#define CLAIM_FULL (-1)

/* Claim [*start, *end) for records totalling `size` bytes after any padding needed.
 * Publishes the claim in our slot first, so that recovery knows whose it is.
 * Returns RING_OK, CLAIM_FULL or RING_CORRUPT. */
static int claim(struct ring *ring, uint64_t size, uint64_t *start, uint64_t *end)
{
    struct ring_header *header = ring->header;
    struct ring_slot *slot = &ring->slots[ring->slot];
    uint64_t tail = LOAD(&header->tail);
    for (;;) {
        uint64_t offset = tail % ring->capacity;
        uint64_t padding = offset + size > ring->capacity ? ring->capacity - offset : 0;
        uint64_t claim_end = tail + padding + size;
        /* cached_free <= tail: it was read with an older tail, and tail only grows. */
        if (UNLIKELY(!position_ok(tail) || tail < ring->cached_free ||
                     claim_end - ring->cached_free > ring->capacity)) {
            struct positions positions;
            int status = read_positions(ring, &positions, 0);
            if (status != RING_OK) {
                return status;
            }
            ring->cached_free = positions.free;
            tail = positions.tail;
            offset = tail % ring->capacity;
            padding = offset + size > ring->capacity ? ring->capacity - offset : 0;
            claim_end = tail + padding + size;
            if (claim_end - positions.free > ring->capacity) {
                STORE_RELAXED(&slot->claim_end, 0);
                STORE_RELAXED(&slot->claim_start, 0);
                return CLAIM_FULL;
            }
        }
        STORE(&slot->claim_start, tail);
        STORE(&slot->claim_end, claim_end);
        if (CAS(&header->tail, &tail, claim_end)) {
            *start = tail;
            *end = claim_end;
            return RING_OK;
        }
    }
}

/* Write a record's payload and header at `position`; the caller commits it. */
static inline void write_payload(struct ring *ring, uint64_t position, const char *payload,
                                 uint64_t length)
{
    struct ring_record *record = record_at(ring, position);
    char *body = (char *)record + RING_RECORD_HEADER;
    if (UNLIKELY(ring_test_stop_point == RING_STOP_PRODUCER_HALF_WRITTEN)) {
        memcpy(body, payload, length / 2);
        STORE_RELAXED(&record->length, (uint32_t)length);
        maybe_stop(RING_STOP_PRODUCER_HALF_WRITTEN);
    }
    memcpy(body, payload, length);
    STORE_RELAXED(&record->length, (uint32_t)length);
    STORE_RELAXED(&record->size, (uint32_t)record_size(length));
    maybe_stop(RING_STOP_PRODUCER_WRITTEN);
}

/* Write padding over [position, end) (the rest of the lap). */
static inline void write_padding(struct ring *ring, uint64_t position, uint64_t end)
{
    struct ring_record *record = record_at(ring, position);
    STORE_RELAXED(&record->length, 0);
    STORE_RELAXED(&record->size, (uint32_t)(end - position));
    STORE(&record->tag, make_tag(ring, position, KIND_PADDING));
}

void ring_publish_roles(struct ring *ring, uint32_t roles)
{
    roles &= RING_PRODUCER | RING_CONSUMER;
    if (UNLIKELY((ring->roles & roles) != roles) && ring->slot >= 0) {
        ring->roles |= roles;
        __atomic_fetch_or(&ring->slots[ring->slot].roles, roles, __ATOMIC_SEQ_CST);
    }
}

int ring_send(struct ring *ring, const void *payload, uint64_t length, int64_t deadline,
              const struct ring_waiter *waiter)
{
    ring->retried = 0;
    if (UNLIKELY(ring->slot < 0)) {
        return RING_NO_SLOT;
    }
    if (damage_found(ring) != RING_OK) {
        return RING_CORRUPT;
    }
    if (length > ring->max_message) {
        return RING_TOO_LARGE;
    }
    ring_publish_roles(ring, RING_PRODUCER);
    uint64_t size = record_size(length);
    uint64_t start, end;
    for (;;) {
        int status = claim(ring, size, &start, &end);
        if (status == RING_OK) {
            break;
        }
        if (status != CLAIM_FULL) {
            return status;
        }
        status = wait_or_give_up(ring, WAIT_FOR_SPACE, size, deadline, waiter);
        if (status != RING_OK) {
            return status;
        }
    }
    maybe_stop(RING_STOP_PRODUCER_CLAIMED);
    uint64_t position = end - size;
    if (position != start) {
        write_padding(ring, start, position);
    }
    write_payload(ring, position, payload, length);
    /* Commit: the exchange is also the barrier before reading the waiter count. */
    __atomic_exchange_n(&record_at(ring, position)->tag, make_tag(ring, position, KIND_MESSAGE),
                        __ATOMIC_SEQ_CST);
    wake_readers(ring);
    return RING_OK;
}

int ring_send_many(struct ring *ring, const struct ring_message *messages, size_t count,
                   size_t *sent, int64_t deadline, const struct ring_waiter *waiter)
{
    *sent = 0;
    ring->retried = 0;
    if (UNLIKELY(ring->slot < 0)) {
        return RING_NO_SLOT;
    }
    if (damage_found(ring) != RING_OK) {
        return RING_CORRUPT;
    }
    for (size_t i = 0; i < count; i++) {
        if (messages[i].length > ring->max_message) {
            return RING_TOO_LARGE;
        }
    }
    ring_publish_roles(ring, RING_PRODUCER);
    struct ring_header *header = ring->header;
    struct ring_slot *slot = &ring->slots[ring->slot];
    size_t done = 0;
    while (done < count) {
        /* Lay out as many messages as fit in the free space, padding at the lap's end. */
        struct positions positions;
        int status = read_positions(ring, &positions, 0);
        if (status != RING_OK) {
            *sent = done;
            return status;
        }
        uint64_t tail = positions.tail;
        uint64_t cursor = tail;
        size_t fit = done;
        while (fit < count) {
            uint64_t size = record_size(messages[fit].length);
            uint64_t offset = cursor % ring->capacity;
            uint64_t next =
                cursor + (offset + size > ring->capacity ? ring->capacity - offset : 0) + size;
            if (next - positions.free > ring->capacity) {
                break;
            }
            cursor = next;
            fit++;
        }
        if (fit == done) {
            STORE_RELAXED(&slot->claim_end, 0); /* no stale claim while waiting */
            STORE_RELAXED(&slot->claim_start, 0);
            status = wait_or_give_up(ring, WAIT_FOR_SPACE, record_size(messages[done].length),
                                     deadline, waiter);
            if (status != RING_OK) {
                *sent = done;
                return status;
            }
            continue;
        }
        STORE(&slot->claim_start, tail);
        STORE(&slot->claim_end, cursor);
        if (!CAS(&header->tail, &tail, cursor)) {
            continue;
        }
        maybe_stop(RING_STOP_PRODUCER_CLAIMED);
        uint64_t position = tail;
        for (size_t i = done; i < fit; i++) {
            uint64_t size = record_size(messages[i].length);
            uint64_t offset = position % ring->capacity;
            if (offset + size > ring->capacity) {
                write_padding(ring, position, position + ring->capacity - offset);
                position += ring->capacity - offset;
            }
            write_payload(ring, position, messages[i].bytes, messages[i].length);
            STORE(&record_at(ring, position)->tag, make_tag(ring, position, KIND_MESSAGE));
            position += size;
        }
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        wake_readers(ring);
        done = fit;
    }
    *sent = done;
    return RING_OK;
}

/* ------------------------------------------------------------------ consuming */

#define TAKE_EMPTY (-1)

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
 * must not be freed while a reader may still read its size). */
static void skip_padding(struct ring *ring, const struct seen *padding)
{
    struct ring_slot *slot = &ring->slots[ring->slot];
    uint64_t head = padding->position, end = head + padding->size;
    STORE(&slot->read_start, head);
    STORE(&slot->read_end, end);
    if (CAS(&ring->header->head, &head, end)) {
        release_records(ring, padding->position, end, padding, 1);
    } else {
        withdraw_range(&slot->read_start, &slot->read_end);
    }
}

/* A bad header at `head` is damage only if head has not moved meanwhile (a
 * moved head means we read a record that was being recycled). */
static int confirm_bad(struct ring *ring, uint64_t head)
{
    if (LOAD(&ring->header->head) != head) {
        return RING_OK;
    }
    return corrupt(ring, "a record header is invalid", head);
}

/* The message at the head, skipping padding (given back at once) and reporting a
 * bad header. Returns RING_OK (`seen` describes it), TAKE_EMPTY or an error. */
static int head_message(struct ring *ring, struct seen *seen)
{
    for (;;) {
        uint64_t head;
        int status = read_head(ring, &head);
        if (status != RING_OK) {
            return status;
        }
        int kind = peek(ring, head, seen);
        if (kind == PEEK_MESSAGE) {
            return RING_OK;
        }
        if (kind == PEEK_EMPTY) {
            return TAKE_EMPTY;
        }
        if (kind == PEEK_PADDING) {
            skip_padding(ring, seen);
            continue;
        }
        status = confirm_bad(ring, head);
        if (status != RING_OK) {
            return status;
        }
    }
}

/* Take one message into what the sink gives. Returns RING_OK, TAKE_EMPTY or an error. */
static int take_one(struct ring *ring, ring_sink sink, void *context, uint32_t *length)
{
    struct ring_slot *slot = &ring->slots[ring->slot];
    for (;;) {
        struct seen seen;
        int status = head_message(ring, &seen);
        if (status != RING_OK) {
            return status;
        }
        /* Ask for the target before claiming, so that a refusal loses no message. */
        char *target = sink(context, 0, seen.length);
        if (target == NULL) {
            return RING_REFUSED;
        }
        uint64_t head = seen.position;
        STORE(&slot->read_start, head);
        STORE(&slot->read_end, head + seen.size);
        if (!CAS(&ring->header->head, &head, head + seen.size)) {
            withdraw_range(&slot->read_start, &slot->read_end);
            continue;
        }
        maybe_stop(RING_STOP_CONSUMER_CLAIMED);
        memcpy(target, (const char *)record_at(ring, seen.position) + RING_RECORD_HEADER,
               seen.length);
        maybe_stop(RING_STOP_CONSUMER_COPIED);
        release_records(ring, seen.position, seen.position + seen.size, &seen, 1);
        *length = seen.length;
        return RING_OK;
    }
}

static int receive_one(struct ring *ring, ring_sink sink, void *context, uint32_t *length,
                       int64_t deadline, const struct ring_waiter *waiter)
{
    if (UNLIKELY(ring->slot < 0)) {
        return RING_NO_SLOT;
    }
    if (damage_found(ring) != RING_OK) {
        return RING_CORRUPT;
    }
    ring_publish_roles(ring, RING_CONSUMER);
    for (;;) {
        int status = take_one(ring, sink, context, length);
        if (status != TAKE_EMPTY) {
            return status;
        }
        status = wait_or_give_up(ring, WAIT_FOR_DATA, 0, deadline, waiter);
        if (status != RING_OK) {
            return status;
        }
    }
}

static int receive_many(struct ring *ring, size_t max_count, ring_sink sink, void *context,
                        size_t *count, int64_t deadline, const struct ring_waiter *waiter)
{
    *count = 0;
    if (UNLIKELY(ring->slot < 0)) {
        return RING_NO_SLOT;
    }
    if (damage_found(ring) != RING_OK) {
        return RING_CORRUPT;
    }
    ring_publish_roles(ring, RING_CONSUMER);
    struct ring_header *header = ring->header;
    struct ring_slot *slot = &ring->slots[ring->slot];
    struct seen records[RING_BATCH];
    char *targets[RING_BATCH];
    for (;;) {
        /* Walk the committed records at the head, asking for a target for each
         * message before claiming them all with one CAS. */
        uint64_t head;
        int status = read_head(ring, &head);
        if (status != RING_OK) {
            return status;
        }
        uint64_t position = head;
        size_t taken = 0, found = 0;
        int bad = 0;
        /* At most a quarter of the ring per call: the space is given back only
         * when the whole batch is copied, and producers should keep writing
         * meanwhile (measured: 4 KiB messages went from 2.5 to 9.5 GB/s). */
        while (found < max_count && taken < RING_BATCH &&
               (found == 0 || position - head < ring->capacity / 4)) {
            int kind = peek(ring, position, &records[taken]);
            if (kind == PEEK_EMPTY) {
                break;
            }
            if (kind == PEEK_BAD) {
                bad = 1;
                break;
            }
            targets[taken] = NULL;
            if (kind == PEEK_MESSAGE) {
                targets[taken] = sink(context, found, records[taken].length);
                if (targets[taken] == NULL) {
                    return RING_REFUSED;
                }
                found++;
            }
            position += records[taken].size;
            taken++;
        }
        if (taken == 0) {
            if (bad) {
                status = confirm_bad(ring, head);
                if (status != RING_OK) {
                    return status;
                }
                continue;
            }
            status = wait_or_give_up(ring, WAIT_FOR_DATA, 0, deadline, waiter);
            if (status != RING_OK) {
                return status;
            }
            continue;
        }
        STORE(&slot->read_start, head);
        STORE(&slot->read_end, position);
        if (!CAS(&header->head, &head, position)) {
            withdraw_range(&slot->read_start, &slot->read_end);
            continue;
        }
        if (found == 0) {
            release_records(ring, head, position, records, taken); /* only padding */
            continue;
        }
        maybe_stop(RING_STOP_CONSUMER_CLAIMED);
        for (size_t i = 0; i < taken; i++) {
            if (targets[i] != NULL) {
                memcpy(targets[i],
                       (const char *)record_at(ring, records[i].position) + RING_RECORD_HEADER,
                       records[i].length);
            }
        }
        maybe_stop(RING_STOP_CONSUMER_COPIED);
        release_records(ring, head, position, records, taken);
        *count = found;
        return RING_OK;
    }
}

static int view_take(struct ring *ring, uint64_t *offset, uint32_t *length, int64_t deadline,
                     const struct ring_waiter *waiter)
{
    if (UNLIKELY(ring->slot < 0)) {
        return RING_NO_SLOT;
    }
    if (damage_found(ring) != RING_OK) {
        return RING_CORRUPT;
    }
    ring_publish_roles(ring, RING_CONSUMER);
    struct ring_slot *slot = &ring->slots[ring->slot];
    for (;;) {
        struct seen seen;
        int status = head_message(ring, &seen);
        if (status == TAKE_EMPTY) {
            status = wait_or_give_up(ring, WAIT_FOR_DATA, 0, deadline, waiter);
            if (status != RING_OK) {
                return status;
            }
            continue;
        }
        if (status != RING_OK) {
            return status;
        }
        uint64_t head = seen.position;
        STORE(&slot->view_start, head);
        STORE(&slot->view_end, head + seen.size);
        if (!CAS(&ring->header->head, &head, head + seen.size)) {
            withdraw_range(&slot->view_start, &slot->view_end);
            continue;
        }
        ring->view_open = 1;
        ring->view_start = head;
        ring->view_end = head + seen.size;
        *offset = RING_DATA_OFFSET + head % ring->capacity + RING_RECORD_HEADER;
        *length = seen.length;
        return RING_OK;
    }
}

int ring_receive(struct ring *ring, ring_sink sink, void *context, uint32_t *length,
                 int64_t deadline, const struct ring_waiter *waiter)
{
    ring->retried = 0;
    int status = receive_one(ring, sink, context, length, deadline, waiter);
    if (UNLIKELY(ring->pass_on)) {
        pass_on(ring);
    }
    return status;
}

int ring_receive_many(struct ring *ring, size_t max_count, ring_sink sink, void *context,
                      size_t *count, int64_t deadline, const struct ring_waiter *waiter)
{
    ring->retried = 0;
    int status = receive_many(ring, max_count, sink, context, count, deadline, waiter);
    if (UNLIKELY(ring->pass_on)) {
        pass_on(ring);
    }
    return status;
}

int ring_view_take(struct ring *ring, uint64_t *offset, uint32_t *length, int64_t deadline,
                   const struct ring_waiter *waiter)
{
    ring->retried = 0;
    int status = view_take(ring, offset, length, deadline, waiter);
    if (UNLIKELY(ring->pass_on)) {
        pass_on(ring);
    }
    return status;
}

void ring_view_release(struct ring *ring)
{
    if (ring->header == NULL || !ring->view_open) {
        return;
    }
    ring->view_open = 0;
    struct seen seen = {.position = ring->view_start,
                        .length = 0,
                        .size = (uint32_t)(ring->view_end - ring->view_start),
                        .kind = PEEK_MESSAGE};
    release_records(ring, ring->view_start, ring->view_end, &seen, 1);
}

/* ------------------------------------------------------------------ lifecycle */

int ring_layout(void *base, size_t length, uint64_t capacity, uint64_t key)
{
    if (capacity < RING_MIN_CAPACITY || capacity > RING_MAX_CAPACITY || capacity % RING_LINE != 0 ||
        length < RING_DATA_OFFSET || length - RING_DATA_OFFSET < capacity) {
        return -1;
    }
    struct ring_header *header = base;
    memset(base, 0, RING_DATA_OFFSET);
    header->version = RING_VERSION;
    header->header_bytes = RING_HEADER_BYTES;
    header->capacity = capacity;
    header->data_offset = RING_DATA_OFFSET;
    header->slot_count = RING_SLOT_COUNT;
    header->slot_bytes = RING_SLOT_BYTES;
    header->key = key & ~(uint64_t)(RING_RECORD_ALIGN - 1);
    header->max_message = capacity / 2 - RING_RECORD_HEADER;
    __atomic_store_n(&header->magic, RING_MAGIC, __ATOMIC_SEQ_CST);
    return 0;
}

const char *ring_attach(struct ring *ring, void *base, size_t length)
{
    struct ring_header *header = base;
    memset(ring, 0, sizeof *ring);
    ring->slot = -1;
    ring->lock_fd = -1;
    if (length < RING_DATA_OFFSET + RING_MIN_CAPACITY || ((uintptr_t)base % 4096) != 0) {
        return "it is too small to hold a ring";
    }
    uint64_t magic = LOAD(&header->magic);
    if (magic != RING_MAGIC) {
        return magic == 0 ? "it was never initialized (its creator may have died while creating it)"
                          : "it does not start with the ring's magic number";
    }
    /* Each layout field is read once, into what is checked and then used. */
    uint32_t version = LOAD_RELAXED(&header->version);
    uint64_t capacity = LOAD_RELAXED(&header->capacity);
    uint64_t key = LOAD_RELAXED(&header->key);
    uint64_t max_message = LOAD_RELAXED(&header->max_message);
    if (version != RING_VERSION) {
        snprintf(ring->attach_problem, sizeof ring->attach_problem,
                 "its layout version is %u, and this unixipc reads version %d only "
                 "(recreate it with this version)",
                 version, RING_VERSION);
        return ring->attach_problem;
    }
    if (LOAD_RELAXED(&header->header_bytes) != RING_HEADER_BYTES ||
        LOAD_RELAXED(&header->slot_count) != RING_SLOT_COUNT ||
        LOAD_RELAXED(&header->slot_bytes) != RING_SLOT_BYTES ||
        LOAD_RELAXED(&header->data_offset) != RING_DATA_OFFSET) {
        return "its layout does not match";
    }
    if (capacity < RING_MIN_CAPACITY || capacity > RING_MAX_CAPACITY || capacity % RING_LINE != 0 ||
        capacity > (uint64_t)(length - RING_DATA_OFFSET)) {
        return "its capacity does not match its size";
    }
    if (max_message != capacity / 2 - RING_RECORD_HEADER || key % RING_RECORD_ALIGN != 0) {
        return "its limits are inconsistent";
    }
    ring->header = header;
    ring->slots = (struct ring_slot *)((char *)base + RING_HEADER_BYTES);
    ring->data = (char *)base + RING_DATA_OFFSET;
    ring->capacity = capacity;
    ring->key = key;
    ring->max_message = max_message;
    ring->spin_ns = SPIN_START_NS;
    uint64_t free_position = LOAD(&header->free);
    ring->cached_free = position_ok(free_position) ? free_position : 0;
    uint64_t head = LOAD(&header->head);
    ring->seen_head = position_ok(head) ? head : 0;
    ring->seen_producer_event = LOAD(&header->producer_event);
    ring->seen_consumer_event = LOAD(&header->consumer_event);
    /* Map every page now (Linux 5.14; elsewhere nothing happens): otherwise each
     * process takes a page fault every 4 KiB of the first lap, about 1 us each
     * (design.md, "Where the tail comes from"). The pages themselves were
     * reserved when the ring was created. */
    (void)madvise(base, length, MADV_POPULATE_WRITE);
    return NULL;
}

int ring_claim_slot(struct ring *ring, int lock_fd, uint32_t roles)
{
    for (int i = 0; i < RING_SLOT_COUNT; i++) {
        struct ring_slot *slot = &ring->slots[i];
        uint32_t state = LOAD(&slot->state);
        if (state == SLOT_ATTACHED && slot_alive(ring, i)) {
            continue;
        }
        if (lock_byte(lock_fd, i, F_WRLCK) != 0) {
            if (errno == EAGAIN || errno == EACCES) {
                continue;
            }
            return -2;
        }
        state = LOAD(&slot->state);
        if (state == SLOT_ATTACHED) {
            bury_slot(ring, slot);
            state = SLOT_DEAD;
        }
        if (state == SLOT_DEAD && !slot_settled(ring, slot)) {
            lock_byte(lock_fd, i, F_UNLCK);
            continue;
        }
        STORE_RELAXED(&slot->roles, roles & (RING_PRODUCER | RING_CONSUMER));
        STORE_RELAXED(&slot->waiting, 0);
        STORE_RELAXED(&slot->pid, (uint32_t)getpid());
        STORE_RELAXED(&slot->claim_start, 0);
        STORE_RELAXED(&slot->claim_end, 0);
        STORE_RELAXED(&slot->read_start, 0);
        STORE_RELAXED(&slot->read_end, 0);
        STORE_RELAXED(&slot->view_start, 0);
        STORE_RELAXED(&slot->view_end, 0);
        memset(ring->header->bell_ids[i], 0, RING_BELL_ID_BYTES);
        bell_disarm(&ring->header->data, i);
        bell_disarm(&ring->header->space, i);
        __atomic_store_n(&slot->state, SLOT_ATTACHED, __ATOMIC_SEQ_CST);
        return i;
    }
    return -1;
}

int ring_adopt_slot(struct ring *ring, int index, int lock_fd)
{
    if (index < 0 || index >= RING_SLOT_COUNT) {
        return -1;
    }
    struct ring_slot *slot = &ring->slots[index];
    STORE_RELAXED(&slot->pid, (uint32_t)getpid());
    ring->slot = index;
    ring->lock_fd = lock_fd;
    ring->roles = LOAD(&slot->roles) & (RING_PRODUCER | RING_CONSUMER);
    return 0;
}

void ring_revoke_slot(struct ring *ring, int index)
{
    if (ring->header != NULL && index >= 0 && index < RING_SLOT_COUNT && index != ring->slot) {
        __atomic_store_n(&ring->slots[index].roles, 0, __ATOMIC_SEQ_CST);
    }
}

void ring_begin_close(struct ring *ring)
{
    __atomic_store_n(&ring->closing, 1, __ATOMIC_SEQ_CST);
    if (ring->header != NULL) {
        futex_wake(&ring->header->data.futex, INT_MAX);
        futex_wake(&ring->header->space.futex, INT_MAX);
    }
}

void ring_detach(struct ring *ring, int announce)
{
    struct ring_header *header = ring->header;
    if (header != NULL && ring->slot >= 0) {
        struct ring_slot *slot = &ring->slots[ring->slot];
        uint32_t roles = LOAD(&slot->roles);
        bell_disarm(&header->data, ring->slot);
        bell_disarm(&header->space, ring->slot);
        ring->has_bell = 0;
        STORE_RELAXED(&slot->roles, 0);
        __atomic_store_n(&slot->state, SLOT_FREE, __ATOMIC_SEQ_CST);
        ring->slot = -1;
        struct census census;
        take_census(ring, &census);
        if (!announce) {
            roles = 0;
        }
        if ((roles & RING_PRODUCER) && census.producers == 0) {
            raise_event(&header->producer_event, EVENT_CLOSED);
            wake_all(ring, &header->data);
        }
        if ((roles & RING_CONSUMER) && census.consumers == 0) {
            raise_event(&header->consumer_event, EVENT_CLOSED);
            wake_all(ring, &header->space);
        }
    }
    ring->header = NULL;
    ring->slots = NULL;
    ring->data = NULL;
    ring->slot = -1;
}

void ring_set_bell(struct ring *ring, const unsigned char *id)
{
    if (ring->header == NULL || ring->slot < 0) {
        return;
    }
    memcpy(ring->header->bell_ids[ring->slot], id, RING_BELL_ID_BYTES);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    ring->has_bell = 1;
}

int ring_ready(struct ring *ring, int for_space, uint64_t size)
{
    if (ring->header == NULL || ring->slot < 0 || damage_found(ring) != RING_OK) {
        return 1; /* the call raises at once */
    }
    if (for_space ? space_ready(ring, size) : data_ready(ring, 0)) {
        return 1;
    }
    if (poll_peers(ring, for_space, size) != RING_OK) {
        /* The peers are gone (or damage): the call raises, and must not skip
         * its own look because we just looked. */
        ring->last_check_ns = 0;
        return 1;
    }
    return arm_bell(ring, for_space, size);
}

int ring_snapshot(struct ring *ring, struct ring_snapshot *out)
{
    if (damage_found(ring) != RING_OK) {
        return RING_CORRUPT;
    }
    struct census census;
    take_census(ring, &census);
    out->producers = census.producers;
    out->consumers = census.consumers;
    out->attached = census.attached;
    struct positions positions;
    int status = read_positions(ring, &positions, 1);
    if (status != RING_OK) {
        return status;
    }
    out->used = positions.tail - positions.free;
    out->messages = 0;
    uint64_t position = positions.head;
    for (uint64_t steps = 0;
         position < positions.tail && steps < ring->capacity / RING_RECORD_HEADER; steps++) {
        struct seen seen;
        int kind = peek(ring, position, &seen);
        if (kind == PEEK_EMPTY || kind == PEEK_BAD) {
            break;
        }
        out->messages += kind == PEEK_MESSAGE;
        position += seen.size;
    }
    return RING_OK;
}
