/* Topics: publish/subscribe over shared memory, with history, loans and views.
 *
 * System calls: fcntl (F_OFD_SETLK, F_OFD_GETLK: one lock byte per publisher or
 * subscriber is its liveness token, released by the kernel when the process
 * dies), sendto/recv/poll (doorbells, doorbell.c), getpid, clock_gettime.
 *
 * The memory is a PosixSharedMemory mapping made by Python; each publisher and
 * subscriber core holds a buffer export of it. Layout (docs/design.md, "Topics"):
 *   header (4 KiB): layout line written once (magic last); then tail (the next
 *   sequence number to claim), the publishers' shared bound, and the doorbell
 *   masks, each on its own cache line;
 *   128 handle slots of 64 bytes: state, role, pid, position (a blocking
 *   subscriber's oldest needed sequence), claim (a publisher's sequence in
 *   progress), view (a dropping subscriber's pinned sequence), doorbell id;
 *   capacity message slots of `stride` bytes: a 16-byte header {stamp, length}
 *   and the payload.
 * Sequence numbers start at `capacity` and grow forever; message s lives in slot
 * s % capacity. The stamp is (sequence << 10) | (pins << 2) | state, with state
 * writing, committed or abandoned, and pins counting the dropping subscribers'
 * views. A publisher claims s with one CAS on tail (only while s - capacity is
 * older than every blocking subscriber's position), waits for the slot's stamp
 * to say "s - capacity is final and unpinned", CASes it to writing(s), copies,
 * and commits with an exchange to committed(s). A subscriber copies message p
 * when the stamp says committed(p) and validates the stamp again afterwards (a
 * seqlock): a stamp of a later sequence means it was lapped, and it counts what
 * it skipped. Every value read from the shared memory is checked before use.
 */
#include "callargs.h"
#include "doorbell.h"

#include <fcntl.h>
#include <sched.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOPIC_MAGIC 0x4349504F54585855ULL /* "UXXTOPIC" read as little-endian */
#define TOPIC_VERSION 1
#define LINE 64
#define HEADER_BYTES 4096
#define HANDLE_COUNT (64 * UNIXIPC_BELL_MASK_WORDS)
#define HANDLE_BYTES 64
#define DATA_OFFSET (HEADER_BYTES + HANDLE_COUNT * HANDLE_BYTES)
#define SLOT_HEADER 16
#define MIN_CAPACITY 2ULL
#define MAX_CAPACITY (1ULL << 24)
#define MAX_MESSAGE (1ULL << 30)
#define MAX_DATA_BYTES (1ULL << 40)

#define STATE_WRITING 0ULL
#define STATE_COMMITTED 1ULL
#define STATE_ABANDONED 2ULL
#define STATE_MASK 3ULL
#define PIN_ONE 4ULL
#define PIN_MASK (255ULL << 2)
#define SEQ_SHIFT 10
#define SEQ_LIMIT (1ULL << 53) /* far beyond any run; a larger tail is damage */

#define HANDLE_FREE 0U
#define HANDLE_ATTACHED 1U
#define HANDLE_DEAD 2U

#define ROLE_PUBLISHER 1U
#define ROLE_SUBSCRIBER 2U
#define ROLE_DROP 4U /* with ROLE_SUBSCRIBER: never holds publishers back */

#define GIL_SPIN_NS 2000
#define SPIN_MIN_NS 4000
#define SPIN_START_NS 50000
#define SPIN_MAX_NS 150000
#define SAME_CPU_NS 50000
#define SLEEP_FIRST_WAITS 16
#define SLICE_NS 200000000LL     /* a sleeper looks for dead peers this often */
#define POLL_CHECK_NS 50000000LL /* timeout=0 callers look at most this often */

/* Test-only: stop the process (SIGSTOP) at one of these points (see topic.py). */
#define STOP_LOAN_WRITING 1
#define STOP_SUBSCRIBER_COPYING 2
#define STOP_PUBLISHER_CLAIMED 3
static int test_stop_point;

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define STORE_SC(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define CAS(p, expected, desired)                                                                 \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_SEQ_CST,                 \
                                __ATOMIC_ACQUIRE)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

struct topic_header {
    /* Line 0: the layout, written once at creation, magic last. */
    uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;
    uint64_t capacity; /* message slots */
    uint64_t stride;   /* bytes per message slot */
    uint64_t max_message;
    uint64_t history;
    uint64_t data_offset;
    uint32_t handle_count;
    uint32_t handle_bytes;
    _Alignas(LINE) uint64_t tail;    /* the next sequence number to claim */
    _Alignas(LINE) uint64_t bound;   /* publishers may claim s < bound + capacity (a hint) */
    _Alignas(LINE) uint64_t data_armed[UNIXIPC_BELL_MASK_WORDS];  /* sleeping for messages */
    _Alignas(LINE) uint64_t space_armed[UNIXIPC_BELL_MASK_WORDS]; /* sleeping for room */
    _Alignas(LINE) uint32_t handles_used; /* slots at or past it were never used */
};
_Static_assert(sizeof(struct topic_header) <= HEADER_BYTES, "header fits its page");

struct topic_handle {
    uint32_t state;
    uint32_t role;
    uint32_t pid;
    uint32_t unused;
    uint64_t position; /* subscriber: the next sequence it reads (0: not yet placed) */
    uint64_t claim;    /* publisher: the sequence it is claiming or writing */
    uint64_t view;     /* dropping subscriber: the sequence its receive_view() pins */
    uint64_t unused2;
    unsigned char bell[UNIXIPC_BELL_ID_BYTES];
};
_Static_assert(sizeof(struct topic_handle) == HANDLE_BYTES, "handle slot is one cache line");

struct topic_slot {
    uint64_t stamp;
    uint32_t length;
    uint32_t cpu; /* 1 + the CPU it was published from (0: unknown): a hint for waiters */
};
_Static_assert(sizeof(struct topic_slot) == SLOT_HEADER, "slot header size");

/* What publishers and subscribers share. */
typedef struct {
    PyObject_HEAD
    Py_buffer buffer;
    int has_buffer;
    struct topic_header *header;
    struct topic_handle *handles;
    char *data;
    uint64_t capacity, stride, max_message, history;
    int lock_fd;  /* our own open file description of the object: holds our lock byte */
    int bell_fd;  /* our doorbell, also the socket we ring others from */
    int slot;     /* our handle slot; -1 when detached */
    int closing;  /* close() was called while a call waits */
    int busy;     /* calls in progress (they may have released the GIL) */
    int forked;   /* a copy inherited by fork: it belongs to the parent */
    int64_t spin_ns;
    int sleep_first;
    int quick_wakes; /* waits in a row that slept and were woken at once */
    int64_t last_check_ns;
    PyObject *description;
} TopicEnd;

typedef struct {
    TopicEnd end;
    uint64_t bound; /* our last look at how far we may claim */
    int loan_open;
    uint64_t loan_seq;
    uint64_t loan_size;
} PublisherObject;

typedef struct {
    TopicEnd end;
    int drop;
    uint64_t position;   /* the next sequence to read */
    uint64_t guaranteed; /* from here on, every message is ours (earlier: history) */
    uint64_t missed;     /* messages lost to laps since subscribing */
    uint64_t pending;    /* lost messages not yet reported by a receive */
    int view_open;
    uint64_t view_seq;
} SubscriberObject;

/* ------------------------------------------------------------------ small helpers */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t make_stamp(uint64_t seq, uint64_t state)
{
    return (seq << SEQ_SHIFT) | state;
}

static inline uint64_t stamp_seq(uint64_t stamp)
{
    return stamp >> SEQ_SHIFT;
}

static inline struct topic_slot *slot_of(const TopicEnd *end, uint64_t seq)
{
    return (struct topic_slot *)(end->data + (seq % end->capacity) * end->stride);
}

static inline char *payload_of(struct topic_slot *slot)
{
    return (char *)slot + SLOT_HEADER;
}

static inline void maybe_stop(int point)
{
    if (UNLIKELY(test_stop_point == point)) {
        raise(SIGSTOP);
    }
}

static PyObject *raise_corrupt(TopicEnd *end, const char *what)
{
    return unixipc_raise_error("IPCError", NULL, 0,
                               "%U is corrupt: %s; recreate it (unlink, then create)",
                               end->description, what);
}

/* The number of handle slots worth looking at (validated: shared memory). */
static inline int handles_used(TopicEnd *end)
{
    uint32_t used = LOAD(&end->header->handles_used);
    return used > HANDLE_COUNT ? HANDLE_COUNT : (int)used;
}

/* The tail, or 0 if it is out of range (damage). */
static inline uint64_t load_tail(TopicEnd *end)
{
    uint64_t tail = __atomic_load_n(&end->header->tail, __ATOMIC_SEQ_CST);
    return tail < end->capacity || tail >= SEQ_LIMIT ? 0 : tail;
}

static const unsigned char *bell_id_of(void *context, int index)
{
    TopicEnd *end = context;
    if (index < 0 || index >= HANDLE_COUNT ||
        LOAD(&end->handles[index].state) != HANDLE_ATTACHED) {
        return NULL;
    }
    return end->handles[index].bell;
}

static inline void ring_bells(TopicEnd *end, uint64_t *mask)
{
    if (UNLIKELY(unixipc_bells_armed(mask))) {
        unixipc_bells_ring(mask, end->bell_fd, bell_id_of, end);
    }
}

static void ring_everyone(TopicEnd *end)
{
    unixipc_bells_ring(end->header->data_armed, end->bell_fd, bell_id_of, end);
    unixipc_bells_ring(end->header->space_armed, end->bell_fd, bell_id_of, end);
}

/* ------------------------------------------------------------------ liveness */

static int lock_byte(int fd, int byte, short type)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &lock);
}

/* True unless the slot's lock byte is free (its holder is gone). Errors count as alive. */
static int handle_alive(TopicEnd *end, int index)
{
    if (index == end->slot) {
        return 1;
    }
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = index, .l_len = 1};
    if (fcntl(end->lock_fd, F_OFD_GETLK, &lock) != 0) {
        return 1;
    }
    return lock.l_type != F_UNLCK;
}

/* Mark every attached handle whose process died as dead: it stops holding
 * publishers back and is no longer rung. Returns how many were buried. */
static int bury_dead(TopicEnd *end)
{
    int buried = 0;
    int used = handles_used(end);
    for (int i = 0; i < used; i++) {
        struct topic_handle *handle = &end->handles[i];
        if (LOAD(&handle->state) != HANDLE_ATTACHED || handle_alive(end, i)) {
            continue;
        }
        if (lock_byte(end->lock_fd, i, F_WRLCK) != 0) {
            continue; /* just taken by a new handle */
        }
        if (LOAD(&handle->state) == HANDLE_ATTACHED) {
            STORE_SC(&handle->position, 0);
            STORE_SC(&handle->state, HANDLE_DEAD);
            unixipc_bell_disarm(end->header->data_armed, i);
            unixipc_bell_disarm(end->header->space_armed, i);
            buried++;
        }
        lock_byte(end->lock_fd, i, F_UNLCK);
    }
    if (buried) {
        ring_bells(end, end->header->space_armed);
    }
    return buried;
}

/* Is a live publisher claiming or writing `seq`? */
static int live_claimant(TopicEnd *end, uint64_t seq)
{
    int used = handles_used(end);
    for (int i = 0; i < used; i++) {
        struct topic_handle *handle = &end->handles[i];
        if (LOAD(&handle->state) == HANDLE_ATTACHED &&
            (LOAD(&handle->role) & ROLE_PUBLISHER) && LOAD(&handle->claim) == seq &&
            handle_alive(end, i)) {
            return 1;
        }
    }
    return 0;
}

/* Is a live dropping subscriber viewing `seq`? */
static int live_viewer(TopicEnd *end, uint64_t seq)
{
    int used = handles_used(end);
    for (int i = 0; i < used; i++) {
        struct topic_handle *handle = &end->handles[i];
        if (LOAD(&handle->state) == HANDLE_ATTACHED && LOAD(&handle->view) == seq &&
            handle_alive(end, i)) {
            return 1;
        }
    }
    return 0;
}

/* Clear what dead processes left in the slot of `seq` in the way of its waiters:
 * a writer that died while writing (its message becomes abandoned), a claimant
 * that died before it took the slot (likewise), pins of dead viewers. Waiters
 * call this every slice. Returns 1 if it changed something. */
static int recover_slot(TopicEnd *end, uint64_t seq)
{
    struct topic_slot *slot = slot_of(end, seq);
    int changed = 0;
    for (int round = 0; round < 8; round++) {
        uint64_t stamp = LOAD(&slot->stamp);
        uint64_t held = stamp_seq(stamp), state = stamp & STATE_MASK;
        if (held > seq || (held == seq && state != STATE_WRITING)) {
            break; /* final for seq (or later) */
        }
        if (held % end->capacity != seq % end->capacity) {
            break; /* damage: the readers' checks report it */
        }
        if (state != STATE_WRITING && (stamp & PIN_MASK) != 0) {
            /* The previous message is pinned by views: are their holders alive? */
            if (live_viewer(end, held)) {
                break;
            }
            if (CAS(&slot->stamp, &stamp, stamp & ~PIN_MASK)) {
                changed = 1;
            }
            continue;
        }
        /* The sequence whose publisher we wait for. */
        uint64_t target = state == STATE_WRITING ? held : held + end->capacity;
        uint64_t tail = load_tail(end);
        if (target > seq || tail == 0 || target >= tail || live_claimant(end, target)) {
            break; /* not claimed yet, or its publisher is alive */
        }
        if (CAS(&slot->stamp, &stamp, make_stamp(target, STATE_ABANDONED))) {
            changed = 1;
        }
    }
    if (changed) {
        ring_everyone(end);
    }
    return changed;
}

/* ------------------------------------------------------------------ waiting */

enum { WAIT_READY, WAIT_TIMEOUT, WAIT_CLOSED, WAIT_ERROR };

typedef int (*ready_fn)(TopicEnd *end, uint64_t argument);
typedef void (*check_fn)(TopicEnd *end, uint64_t argument);
/* 1 if the peer we wait for last ran on our CPU, 0 if elsewhere, -1 if unknown. */
typedef int (*peer_cpu_fn)(TopicEnd *end, uint64_t argument);

struct wait_plan {
    ready_fn ready;
    check_fn check;      /* every slice while asleep: repair what dead peers left */
    uint64_t argument;
    int data, space;     /* which doorbell masks to arm */
    peer_cpu_fn peer_on_our_cpu; /* NULL: unknown */
};

static void arm(TopicEnd *end, const struct wait_plan *plan)
{
    if (plan->data) {
        unixipc_bell_arm(end->header->data_armed, end->slot);
    }
    if (plan->space) {
        unixipc_bell_arm(end->header->space_armed, end->slot);
    }
}

static void disarm(TopicEnd *end, const struct wait_plan *plan)
{
    if (plan->data) {
        unixipc_bell_disarm(end->header->data_armed, end->slot);
    }
    if (plan->space) {
        unixipc_bell_disarm(end->header->space_armed, end->slot);
    }
}

/* For timeout=0 and ready(): drain the doorbell, arm it, look once more. When
 * this says not ready, the doorbell stays armed: the descriptor becomes readable
 * when that may have changed. Looks for dead peers at most every POLL_CHECK_NS. */
static int try_once(TopicEnd *end, const struct wait_plan *plan)
{
    if (plan->ready(end, plan->argument)) {
        return 1;
    }
    int64_t now = unixipc_monotonic_ns();
    if (now - end->last_check_ns >= POLL_CHECK_NS) {
        end->last_check_ns = now;
        plan->check(end, plan->argument);
    }
    unixipc_bell_drain(end->bell_fd);
    arm(end, plan);
    return plan->ready(end, plan->argument);
}

/* Wait until plan->ready may hold: spin briefly, then sleep on the doorbell.
 * Called with the GIL held; releases it while waiting. */
static int end_wait(TopicEnd *end, const struct wait_plan *plan, int64_t deadline)
{
    if (deadline == UNIXIPC_TRY_ONCE) {
        return try_once(end, plan) ? WAIT_READY : WAIT_TIMEOUT;
    }
    int result = WAIT_READY;
    /* Spinning while the peer needs our CPU to answer only delays the answer.
     * When the peer's CPU is known (messages say where they were published), it
     * decides; otherwise a guess from how the last waits ended. */
    int known = plan->peer_on_our_cpu == NULL ? -1 : plan->peer_on_our_cpu(end, plan->argument);
    int spinning = known == -1 ? end->sleep_first == 0 : !known;
    if (known == -1 && !spinning) {
        end->sleep_first--;
    } else if (spinning) {
        /* Releasing the GIL costs more than a ping-pong's answer often takes. */
        int64_t until = unixipc_monotonic_ns() + GIL_SPIN_NS;
        do {
            for (int i = 0; i < 16; i++) {
                if (plan->ready(end, plan->argument)) {
                    end->quick_wakes = 0;
                    return WAIT_READY;
                }
                cpu_relax();
            }
        } while (unixipc_monotonic_ns() < until);
    }
    PyThreadState *thread = PyEval_SaveThread();
    int64_t spin = end->spin_ns;
    int64_t start = unixipc_monotonic_ns();
    int64_t spin_until = spinning ? start + spin : start;
    if (deadline >= 0 && deadline < spin_until) {
        spin_until = deadline;
    }
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (plan->ready(end, plan->argument)) {
                end->quick_wakes = 0;
                goto done;
            }
            cpu_relax();
        }
        if (__atomic_load_n(&end->closing, __ATOMIC_RELAXED)) {
            result = WAIT_CLOSED;
            goto done;
        }
        if (unixipc_monotonic_ns() >= spin_until) {
            break;
        }
    }
    int64_t sleep_start = unixipc_monotonic_ns();
    int64_t next_check = sleep_start; /* look for dead peers before the first sleep */
    for (;;) {
        unixipc_bell_drain(end->bell_fd);
        arm(end, plan);
        if (plan->ready(end, plan->argument)) {
            break;
        }
        if (__atomic_load_n(&end->closing, __ATOMIC_RELAXED)) {
            result = WAIT_CLOSED;
            break;
        }
        int64_t now = unixipc_monotonic_ns();
        if (now >= next_check) {
            next_check = now + SLICE_NS;
            plan->check(end, plan->argument);
            if (plan->ready(end, plan->argument)) {
                break;
            }
        }
        if (deadline >= 0 && now >= deadline) {
            result = WAIT_TIMEOUT;
            break;
        }
        int64_t until = deadline >= 0 && deadline < next_check ? deadline : next_check;
        if (unixipc_bell_sleep(end->bell_fd, until) < 0) {
            PyEval_RestoreThread(thread);
            int failed = unixipc_after_eintr() < 0;
            thread = PyEval_SaveThread();
            if (failed) {
                result = WAIT_ERROR;
                break;
            }
        }
    }
    disarm(end, plan);
    if (spinning && known == -1) {
        int64_t now = unixipc_monotonic_ns();
        int quick = result == WAIT_READY && now - sleep_start < SAME_CPU_NS;
        end->quick_wakes = quick ? end->quick_wakes + 1 : 0;
        if (quick && end->quick_wakes >= 2) {
            /* Twice in a row the answer came as soon as we stopped spinning: the
             * peer most likely needs our CPU (once is often chance, cross-core). */
            end->sleep_first = SLEEP_FIRST_WAITS;
            end->quick_wakes = 0;
        } else if (quick) {
            spin *= 2; /* it came just after we gave up: spin a little longer */
        } else if (result == WAIT_READY && now - start < SPIN_MAX_NS) {
            spin *= 2;
        } else {
            spin /= 2;
        }
        end->spin_ns = spin < SPIN_MIN_NS ? SPIN_MIN_NS : spin > SPIN_MAX_NS ? SPIN_MAX_NS : spin;
    }
done:
    PyEval_RestoreThread(thread);
    return result;
}

static PyObject *raise_wait(TopicEnd *end, int outcome, const char *what, double seconds)
{
    if (outcome == WAIT_TIMEOUT) {
        return unixipc_raise_timeout(what, end->description, seconds);
    }
    if (outcome == WAIT_CLOSED) {
        return unixipc_raise_error("ClosedResourceError", NULL, 0, "%U was closed during %s",
                                   end->description, what);
    }
    return NULL; /* WAIT_ERROR: a signal handler's exception is set */
}

/* ------------------------------------------------------------------ entering a call */

static int end_enter(TopicEnd *end)
{
    if (UNLIKELY(end->header == NULL)) {
        if (end->description == NULL) {
            PyErr_SetString(PyExc_ValueError, "not attached to a topic");
            return -1;
        }
        unixipc_raise_error("ClosedResourceError", NULL, 0, "%U is closed", end->description);
        return -1;
    }
    if (UNLIKELY(end->forked)) {
        unixipc_raise_error("IPCError", NULL, 0,
                            "%U was inherited from the parent process through fork; it belongs "
                            "to the parent: open the topic again in this process",
                            end->description);
        return -1;
    }
    if (UNLIKELY(end->busy)) {
        unixipc_raise_error("IPCError", NULL, 0,
                            "%U is in use by another thread: make one per thread",
                            end->description);
        return -1;
    }
    end->busy = 1;
    return 0;
}

static inline void end_leave(TopicEnd *end)
{
    end->busy = 0;
}

/* ------------------------------------------------------------------ publishing */

/* The smallest position of the blocking subscribers, or `tail` if smaller
 * (positions are never past the tail, so a bound never passes a tail that was
 * read before it: that is what lets a new subscriber trust what it reads
 * after announcing itself). */
static uint64_t scan_bound(TopicEnd *end, uint64_t tail)
{
    uint64_t bound = tail;
    int used = handles_used(end);
    for (int i = 0; i < used; i++) {
        struct topic_handle *handle = &end->handles[i];
        if (LOAD(&handle->state) != HANDLE_ATTACHED ||
            (LOAD(&handle->role) & (ROLE_SUBSCRIBER | ROLE_DROP)) != ROLE_SUBSCRIBER) {
            continue;
        }
        uint64_t position = __atomic_load_n(&handle->position, __ATOMIC_SEQ_CST);
        if (position != 0 && position < bound) {
            bound = position;
        }
    }
    return bound;
}

/* The message slot for `seq` may be taken: its previous message is final and unpinned. */
static inline int slot_free_for(TopicEnd *end, uint64_t seq)
{
    uint64_t stamp = LOAD(&slot_of(end, seq)->stamp);
    uint64_t previous = seq - end->capacity;
    return stamp == make_stamp(previous, STATE_COMMITTED) ||
           stamp == make_stamp(previous, STATE_ABANDONED);
}

/* May we claim the tail now? Uses our cached bound first, then the shared one,
 * then a scan of the subscribers. */
static int room_ready(TopicEnd *end, uint64_t unused)
{
    (void)unused;
    PublisherObject *self = (PublisherObject *)end;
    uint64_t tail = load_tail(end);
    if (tail == 0) {
        return 1; /* damage: let the claim report it */
    }
    if (tail >= self->bound + end->capacity) {
        uint64_t shared = LOAD(&end->header->bound);
        if (shared > self->bound && shared <= tail) {
            self->bound = shared;
        }
        if (tail >= self->bound + end->capacity) {
            uint64_t bound = scan_bound(end, tail);
            if (bound > self->bound) {
                self->bound = bound;
            }
            uint64_t old = LOAD(&end->header->bound);
            while (old < bound && !CAS(&end->header->bound, &old, bound)) {
            }
            if (tail >= self->bound + end->capacity) {
                return 0;
            }
        }
    }
    return slot_free_for(end, tail);
}

static void room_check(TopicEnd *end, uint64_t unused)
{
    (void)unused;
    bury_dead(end);
    uint64_t tail = load_tail(end);
    if (tail != 0) {
        recover_slot(end, tail - end->capacity);
    }
}

static int slot_ready(TopicEnd *end, uint64_t seq)
{
    return slot_free_for(end, seq);
}

static void slot_check(TopicEnd *end, uint64_t seq)
{
    bury_dead(end);
    recover_slot(end, seq - end->capacity);
}

/* Claim the next sequence number and take its slot (stamp writing(seq)).
 * Returns 0 with *seq set, or -1 with an exception set. */
static int claim(PublisherObject *self, const char *what, int64_t deadline, double seconds,
                 uint64_t *seq_out)
{
    TopicEnd *end = &self->end;
    struct topic_handle *handle = &end->handles[end->slot];
    struct wait_plan room = {room_ready, room_check, 0, 1, 1, NULL};
    uint64_t seq;
    for (;;) {
        if (!room_ready(end, 0)) {
            int outcome = end_wait(end, &room, deadline);
            if (outcome != WAIT_READY) {
                raise_wait(end, outcome, what, seconds);
                return -1;
            }
            continue;
        }
        seq = load_tail(end);
        if (seq == 0) {
            raise_corrupt(end, "its tail is out of range");
            return -1;
        }
        if (seq >= self->bound + end->capacity) {
            continue;
        }
        /* Announce the claim first: whoever finds it unfinished asks if we live. */
        STORE_RELAXED(&handle->claim, seq);
        uint64_t expected = seq;
        if (CAS(&end->header->tail, &expected, seq + 1)) {
            break;
        }
    }
    maybe_stop(STOP_PUBLISHER_CLAIMED);
    struct topic_slot *slot = slot_of(end, seq);
    struct wait_plan free_slot = {slot_ready, slot_check, seq, 1, 1, NULL};
    for (;;) {
        uint64_t stamp = LOAD(&slot->stamp);
        if ((stamp == make_stamp(seq - end->capacity, STATE_COMMITTED) ||
             stamp == make_stamp(seq - end->capacity, STATE_ABANDONED)) &&
            CAS(&slot->stamp, &stamp, make_stamp(seq, STATE_WRITING))) {
            break;
        }
        int outcome = end_wait(end, &free_slot, deadline);
        if (outcome != WAIT_READY) {
            /* We hold a sequence number that we cannot fill: give up the claim,
             * and the waiters' recovery marks the message abandoned. */
            STORE_SC(&handle->claim, 0);
            raise_wait(end, outcome, what, seconds);
            return -1;
        }
    }
    *seq_out = seq;
    return 0;
}

static void commit(TopicEnd *end, uint64_t seq, uint64_t length, uint64_t state)
{
    struct topic_slot *slot = slot_of(end, seq);
    int cpu = sched_getcpu(); /* cheap: rseq or the vDSO */
    STORE_RELAXED(&slot->cpu, cpu < 0 ? 0U : (uint32_t)cpu + 1);
    STORE_RELAXED(&slot->length, (uint32_t)length);
    /* The exchange is also the barrier before reading the doorbell masks. */
    __atomic_exchange_n(&slot->stamp, make_stamp(seq, state), __ATOMIC_SEQ_CST);
    ring_bells(end, end->header->data_armed);
}

static PyObject *raise_too_large(TopicEnd *end, Py_ssize_t length)
{
    return unixipc_raise_error("MessageTooLarge", NULL, 0,
                               "a message of %zd bytes is larger than the maximum of %llu bytes "
                               "of %U",
                               length, (unsigned long long)end->max_message, end->description);
}

static int publisher_enter(PublisherObject *self)
{
    if (end_enter(&self->end) < 0) {
        return -1;
    }
    if (self->loan_open) {
        end_leave(&self->end);
        unixipc_raise_error("IPCError", NULL, 0,
                            "%U: a loan of this publisher is still open; leave its with block "
                            "first",
                            self->end.description);
        return -1;
    }
    return 0;
}

static const char *const DATA_NAMES[] = {"data"};
static const char *const SIZE_NAMES[] = {"size"};
static const char *const BUFFER_NAMES[] = {"buffer"};
static const char *const MAX_COUNT_NAMES[] = {"max_count"};

static PyObject *Publisher_publish(PublisherObject *self, PyObject *const *args,
                                   Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data, *timeout;
    int64_t deadline;
    double seconds;
    if (unixipc_parse_call("publish", args, nargs, kwnames, 1, DATA_NAMES, &data, &timeout) < 0 ||
        unixipc_parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    Py_buffer view;
    if (unixipc_get_bytes_like(data, &view) < 0) {
        return NULL;
    }
    if (publisher_enter(self) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    TopicEnd *end = &self->end;
    uint64_t seq;
    PyObject *result = NULL;
    if ((uint64_t)view.len > end->max_message) {
        raise_too_large(end, view.len);
    } else if (claim(self, "publish", deadline, seconds, &seq) == 0) {
        memcpy(payload_of(slot_of(end, seq)), view.buf, (size_t)view.len);
        commit(end, seq, (uint64_t)view.len, STATE_COMMITTED);
        result = Py_None;
        Py_INCREF(result);
    }
    end_leave(end);
    PyBuffer_Release(&view);
    return result;
}

/* _loan_take(size, *, timeout=None) -> offset of the payload in the mapping. */
static PyObject *Publisher_loan_take(PublisherObject *self, PyObject *const *args,
                                     Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *size_object, *timeout;
    int64_t deadline;
    double seconds;
    if (unixipc_parse_call("loan", args, nargs, kwnames, 1, SIZE_NAMES, &size_object, &timeout) <
            0 ||
        unixipc_parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(size_object);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (publisher_enter(self) < 0) {
        return NULL;
    }
    TopicEnd *end = &self->end;
    uint64_t seq;
    PyObject *result = NULL;
    if (size < 0 || (uint64_t)size > end->max_message) {
        raise_too_large(end, size);
    } else if (claim(self, "loan", deadline, seconds, &seq) == 0) {
        self->loan_open = 1;
        self->loan_seq = seq;
        self->loan_size = (uint64_t)size;
        result = PyLong_FromSsize_t(
            (Py_ssize_t)(payload_of(slot_of(end, seq)) - (char *)end->buffer.buf));
        maybe_stop(STOP_LOAN_WRITING);
    }
    end_leave(end);
    return result;
}

/* _loan_finish(publish): commit the loan's message, or mark it abandoned. */
static PyObject *Publisher_loan_finish(PublisherObject *self, PyObject *arg)
{
    int publish = PyObject_IsTrue(arg);
    if (publish < 0) {
        return NULL;
    }
    TopicEnd *end = &self->end;
    if (self->loan_open && end->header != NULL) {
        self->loan_open = 0;
        commit(end, self->loan_seq, publish ? self->loan_size : 0,
               publish ? STATE_COMMITTED : STATE_ABANDONED);
    }
    Py_RETURN_NONE;
}

static PyObject *Publisher_ready(PublisherObject *self, PyObject *Py_UNUSED(ignored))
{
    if (end_enter(&self->end) < 0) {
        return NULL;
    }
    struct wait_plan room = {room_ready, room_check, 0, 1, 1, NULL};
    int ready = try_once(&self->end, &room);
    end_leave(&self->end);
    return PyBool_FromLong(ready);
}

/* ------------------------------------------------------------------ subscribing */

enum { SEEN_EMPTY, SEEN_MESSAGE, SEEN_SKIP, SEEN_LAPPED, SEEN_BAD };

/* What the slot of `seq` holds for a reader of `seq`; *stamp_out is the stamp read. */
static inline int look(TopicEnd *end, uint64_t seq, uint64_t *stamp_out)
{
    uint64_t stamp = LOAD(&slot_of(end, seq)->stamp);
    uint64_t held = stamp_seq(stamp);
    *stamp_out = stamp;
    if (held < seq) {
        return SEEN_EMPTY;
    }
    if (held > seq) {
        return SEEN_LAPPED;
    }
    switch (stamp & STATE_MASK) {
    case STATE_WRITING:
        return SEEN_EMPTY;
    case STATE_COMMITTED:
        return SEEN_MESSAGE;
    case STATE_ABANDONED:
        return SEEN_SKIP;
    default:
        return SEEN_BAD;
    }
}

/* Move to `next` (all before it read or skipped); a blocking subscriber's
 * position releases the slots before it to publishers. */
static inline void advance(SubscriberObject *self, uint64_t next)
{
    TopicEnd *end = &self->end;
    self->position = next;
    struct topic_handle *handle = &end->handles[end->slot];
    if (self->drop) {
        STORE_RELAXED(&handle->position, next);
        return;
    }
    /* seq_cst: the store is seen before we look at the sleeping publishers. */
    STORE_SC(&handle->position, next);
    ring_bells(end, end->header->space_armed);
}

/* Lapped at self->position: skip to the oldest message that is likely intact,
 * counting what was lost (messages before `guaranteed` were history, not ours). */
static int skip_lap(SubscriberObject *self)
{
    TopicEnd *end = &self->end;
    uint64_t tail = load_tail(end);
    uint64_t from = self->position;
    if (tail == 0 || tail <= from) {
        raise_corrupt(end, "a message slot holds a sequence number past the tail");
        return -1;
    }
    uint64_t next = tail - end->capacity + 1;
    if (next <= from) {
        next = from + 1;
    }
    if (from < self->guaranteed) {
        /* History overwritten before we read it: not ours to count, and never
         * jump past `guaranteed`, which no publisher can have overwritten
         * while we block them. */
        if (next > self->guaranteed) {
            next = self->guaranteed;
        }
    } else {
        self->missed += next - from;
        self->pending += next - from;
    }
    advance(self, next);
    return 0;
}

static PyObject *raise_missed(SubscriberObject *self)
{
    uint64_t count = self->pending;
    self->pending = 0;
    return unixipc_raise_error("MessagesMissed", "count", (Py_ssize_t)count,
                               "%U: this subscriber was overtaken and missed %llu message%s",
                               self->end.description, (unsigned long long)count,
                               count == 1 ? "" : "s");
}

static int message_ready(TopicEnd *end, uint64_t unused)
{
    (void)unused;
    SubscriberObject *self = (SubscriberObject *)end;
    uint64_t stamp;
    return look(end, self->position, &stamp) != SEEN_EMPTY;
}

/* Was the message before ours published from the CPU we run on? */
static int publisher_on_our_cpu(TopicEnd *end, uint64_t unused)
{
    (void)unused;
    SubscriberObject *self = (SubscriberObject *)end;
    uint32_t theirs = LOAD_RELAXED(&slot_of(end, self->position - 1)->cpu);
    int ours = sched_getcpu();
    if (theirs == 0 || ours < 0) {
        return -1;
    }
    return theirs == (uint32_t)ours + 1;
}

static void message_check(TopicEnd *end, uint64_t unused)
{
    (void)unused;
    SubscriberObject *self = (SubscriberObject *)end;
    uint64_t tail = load_tail(end);
    if (tail != 0 && tail > self->position) {
        recover_slot(end, self->position); /* claimed but not committed: is its writer alive? */
    }
}

enum { TAKE_OK, TAKE_EMPTY, TAKE_ERROR };

/* Enter a receiving call: not while this subscriber's receive_view() is open
 * (the viewed message is still at our position). */
static int subscriber_enter(SubscriberObject *self)
{
    if (end_enter(&self->end) < 0) {
        return -1;
    }
    if (self->view_open) {
        end_leave(&self->end);
        unixipc_raise_error("IPCError", NULL, 0,
                            "%U: a receive_view() of this subscriber is still open; leave its "
                            "with block first",
                            self->end.description);
        return -1;
    }
    return 0;
}

/* Settle what is at our position until a message is ready there: skip abandoned
 * ones, count laps. Returns TAKE_OK (message at self->position, stamp in
 * *stamp_out), TAKE_EMPTY, or TAKE_ERROR (exception set: MessagesMissed too). */
static int find_message(SubscriberObject *self, uint64_t *stamp_out)
{
    TopicEnd *end = &self->end;
    for (;;) {
        if (UNLIKELY(self->pending)) {
            raise_missed(self);
            return TAKE_ERROR;
        }
        switch (look(end, self->position, stamp_out)) {
        case SEEN_MESSAGE:
            return TAKE_OK;
        case SEEN_EMPTY:
            return TAKE_EMPTY;
        case SEEN_SKIP:
            advance(self, self->position + 1);
            continue;
        case SEEN_LAPPED:
            if (skip_lap(self) < 0) {
                return TAKE_ERROR;
            }
            continue;
        default:
            raise_corrupt(end, "a message slot has an invalid state");
            return TAKE_ERROR;
        }
    }
}

/* The length of the message under `stamp`, checked; -1: the slot moved on
 * (lapped: look again), -2: damage (exception set). */
static int64_t checked_length(TopicEnd *end, struct topic_slot *slot, uint64_t stamp)
{
    uint32_t length = LOAD_RELAXED(&slot->length);
    if ((uint64_t)length <= end->max_message) {
        return length;
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (((LOAD_RELAXED(&slot->stamp) ^ stamp) & ~PIN_MASK) != 0) {
        return -1;
    }
    raise_corrupt(end, "a message is longer than the topic's maximum");
    return -2;
}

/* After copying: was the message overwritten meanwhile (seqlock validation)? */
static inline int still_there(struct topic_slot *slot, uint64_t stamp)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return ((LOAD_RELAXED(&slot->stamp) ^ stamp) & ~PIN_MASK) == 0;
}

/* Wait (or give up) until something is at our position. */
static int wait_for_message(SubscriberObject *self, const char *what, int64_t deadline,
                            double seconds)
{
    struct wait_plan plan = {message_ready, message_check, 0, 1, 0, publisher_on_our_cpu};
    int outcome = end_wait(&self->end, &plan, deadline);
    if (outcome != WAIT_READY) {
        raise_wait(&self->end, outcome, what, seconds);
        return -1;
    }
    return 0;
}

static PyObject *receive_common(SubscriberObject *self, const char *what, PyObject *timeout,
                                Py_buffer *target)
{
    int64_t deadline;
    double seconds;
    if (unixipc_parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    TopicEnd *end = &self->end;
    if (subscriber_enter(self) < 0) {
        return NULL;
    }
    PyObject *bytes = NULL;
    int64_t length = 0;
    for (;;) {
        uint64_t stamp;
        int found = find_message(self, &stamp);
        if (found == TAKE_ERROR) {
            goto fail;
        }
        if (found == TAKE_EMPTY) {
            if (wait_for_message(self, what, deadline, seconds) < 0) {
                goto fail;
            }
            continue;
        }
        struct topic_slot *slot = slot_of(end, self->position);
        length = checked_length(end, slot, stamp);
        if (length == -2) {
            goto fail;
        }
        if (length == -1) {
            continue;
        }
        if (target != NULL) {
            if (length > target->len) {
                unixipc_raise_error("MessageTooLarge", NULL, 0,
                                    "the next message of %U has %lld bytes: more than the "
                                    "buffer's %zd (it stays for the next receive)",
                                    end->description, (long long)length, target->len);
                goto fail;
            }
            memcpy(target->buf, payload_of(slot), (size_t)length);
        } else {
            if (bytes == NULL || PyBytes_GET_SIZE(bytes) != length) {
                Py_XDECREF(bytes);
                bytes = PyBytes_FromStringAndSize(NULL, length);
                if (bytes == NULL) {
                    goto fail;
                }
            }
            memcpy(PyBytes_AS_STRING(bytes), payload_of(slot), (size_t)length);
        }
        maybe_stop(STOP_SUBSCRIBER_COPYING);
        if (!still_there(slot, stamp)) {
            continue; /* overwritten while we copied: look again (a lap) */
        }
        advance(self, self->position + 1);
        break;
    }
    end_leave(end);
    return target != NULL ? PyLong_FromLongLong(length) : bytes;
fail:
    end_leave(end);
    Py_XDECREF(bytes);
    return NULL;
}

static PyObject *Subscriber_receive(SubscriberObject *self, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *timeout;
    if (unixipc_parse_call("receive", args, nargs, kwnames, 0, NULL, NULL, &timeout) < 0) {
        return NULL;
    }
    return receive_common(self, "receive", timeout, NULL);
}

static PyObject *Subscriber_receive_into(SubscriberObject *self, PyObject *const *args,
                                         Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *buffer, *timeout;
    if (unixipc_parse_call("receive_into", args, nargs, kwnames, 1, BUFFER_NAMES, &buffer,
                           &timeout) < 0) {
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

static PyObject *Subscriber_receive_many(SubscriberObject *self, PyObject *const *args,
                                         Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *max_object, *timeout;
    int64_t deadline;
    double seconds;
    if (unixipc_parse_call("receive_many", args, nargs, kwnames, 1, MAX_COUNT_NAMES, &max_object,
                           &timeout) < 0 ||
        unixipc_parse_timeout(timeout, &deadline, &seconds) < 0) {
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
    TopicEnd *end = &self->end;
    if (subscriber_enter(self) < 0) {
        return NULL;
    }
    struct topic_handle *handle = &end->handles[end->slot];
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        goto fail;
    }
    for (;;) {
        uint64_t stamp;
        int found = find_message(self, &stamp);
        if (found == TAKE_ERROR) {
            goto fail;
        }
        if (found == TAKE_OK) {
            break;
        }
        if (wait_for_message(self, "receive_many", deadline, seconds) < 0) {
            goto fail;
        }
    }
    /* Copy what is ready, one message after another; a blocking subscriber
     * publishes its position once at the end (the slots stay ours meanwhile). */
    uint64_t position = self->position;
    while (PyList_GET_SIZE(list) < max_count) {
        uint64_t stamp;
        int seen = look(end, position, &stamp);
        if (seen == SEEN_SKIP) {
            position++;
            continue;
        }
        if (seen != SEEN_MESSAGE) {
            break; /* empty, lapped or damaged: the next call handles it */
        }
        struct topic_slot *slot = slot_of(end, position);
        int64_t length = checked_length(end, slot, stamp);
        if (length < 0) {
            PyErr_Clear();
            break;
        }
        PyObject *bytes = PyBytes_FromStringAndSize(payload_of(slot), length);
        if (bytes == NULL) {
            break; /* what we have is returned; MemoryError is for the next call */
        }
        if (!still_there(slot, stamp)) {
            Py_DECREF(bytes);
            break;
        }
        int appended = PyList_Append(list, bytes);
        Py_DECREF(bytes);
        if (appended < 0) {
            break;
        }
        position++;
        if (!self->drop && (position & 63) == 0) {
            STORE_RELAXED(&handle->position, position); /* let publishers go on */
        }
    }
    PyErr_Clear();
    advance(self, position);
    end_leave(end);
    return list;
fail:
    end_leave(end);
    Py_XDECREF(list);
    return NULL;
}

/* _view_take(*, timeout=None) -> (offset, length): the next message, held in place. */
static PyObject *Subscriber_view_take(SubscriberObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *timeout;
    int64_t deadline;
    double seconds;
    if (unixipc_parse_call("receive_view", args, nargs, kwnames, 0, NULL, NULL, &timeout) < 0 ||
        unixipc_parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    TopicEnd *end = &self->end;
    if (subscriber_enter(self) < 0) {
        return NULL;
    }
    struct topic_handle *handle = &end->handles[end->slot];
    for (;;) {
        uint64_t stamp;
        int found = find_message(self, &stamp);
        if (found == TAKE_ERROR) {
            end_leave(end);
            return NULL;
        }
        if (found == TAKE_EMPTY) {
            if (wait_for_message(self, "receive_view", deadline, seconds) < 0) {
                end_leave(end);
                return NULL;
            }
            continue;
        }
        struct topic_slot *slot = slot_of(end, self->position);
        if (self->drop) {
            /* Pin the message: publishers wait for it while the view is open. The
             * view is announced first, so that recovery knows whose pin it is. */
            if ((stamp & PIN_MASK) == PIN_MASK) {
                continue; /* 255 views at once: wait for one to go */
            }
            STORE_SC(&handle->view, self->position);
            if (!CAS(&slot->stamp, &stamp, stamp + PIN_ONE)) {
                STORE_SC(&handle->view, 0);
                continue;
            }
        }
        int64_t length = checked_length(end, slot, stamp);
        if (length < 0) {
            if (self->drop) {
                __atomic_fetch_sub(&slot->stamp, PIN_ONE, __ATOMIC_SEQ_CST);
                STORE_SC(&handle->view, 0);
            }
            if (length == -2) {
                end_leave(end);
                return NULL;
            }
            continue;
        }
        self->view_open = 1;
        self->view_seq = self->position;
        end_leave(end);
        return Py_BuildValue("nL", (Py_ssize_t)(payload_of(slot) - (char *)end->buffer.buf),
                             (long long)length);
    }
}

static PyObject *Subscriber_view_release(SubscriberObject *self, PyObject *Py_UNUSED(ignored))
{
    TopicEnd *end = &self->end;
    if (!self->view_open || end->header == NULL) {
        Py_RETURN_NONE;
    }
    self->view_open = 0;
    if (self->drop) {
        struct topic_slot *slot = slot_of(end, self->view_seq);
        uint64_t stamp = LOAD(&slot->stamp);
        /* Unpin, unless recovery took our pin (it never does while we live). */
        while (stamp_seq(stamp) == self->view_seq && (stamp & PIN_MASK) != 0 &&
               !CAS(&slot->stamp, &stamp, stamp - PIN_ONE)) {
        }
        STORE_SC(&end->handles[end->slot].view, 0);
        ring_bells(end, end->header->space_armed);
    }
    if (self->position == self->view_seq) {
        advance(self, self->view_seq + 1);
    }
    Py_RETURN_NONE;
}

static PyObject *Subscriber_ready(SubscriberObject *self, PyObject *Py_UNUSED(ignored))
{
    if (end_enter(&self->end) < 0) {
        return NULL;
    }
    int ready = self->pending != 0;
    if (!ready) {
        struct wait_plan plan = {message_ready, message_check, 0, 1, 0, NULL};
        ready = try_once(&self->end, &plan);
    }
    end_leave(&self->end);
    return PyBool_FromLong(ready);
}

static PyObject *Subscriber_get_missed(SubscriberObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->missed);
}

/* ------------------------------------------------------------------ lifecycle */

static const char *check_layout(struct topic_header *header, Py_ssize_t length)
{
    if (length < DATA_OFFSET) {
        return "it is too small to hold a topic";
    }
    if (LOAD(&header->magic) != TOPIC_MAGIC) {
        return "it does not start with a topic's magic number";
    }
    if (header->version != TOPIC_VERSION) {
        return "its layout version is not the one this unixipc reads";
    }
    if (header->header_bytes != HEADER_BYTES || header->handle_count != HANDLE_COUNT ||
        header->handle_bytes != HANDLE_BYTES || header->data_offset != DATA_OFFSET) {
        return "its layout does not match";
    }
    uint64_t capacity = header->capacity, max_message = header->max_message;
    if (capacity < MIN_CAPACITY || capacity > MAX_CAPACITY || max_message > MAX_MESSAGE ||
        header->history >= capacity ||
        header->stride != ((SLOT_HEADER + max_message + LINE - 1) & ~(uint64_t)(LINE - 1)) ||
        capacity * header->stride > MAX_DATA_BYTES ||
        capacity * header->stride > (uint64_t)(length - DATA_OFFSET)) {
        return "its sizes are inconsistent with each other or with its length";
    }
    return NULL;
}

/* Take a free handle slot (or a dead one) and hold its lock byte through lock_fd.
 * Returns its index, -1 if none is free, -2 with an exception set. */
static int take_handle(TopicEnd *end, uint32_t role, const unsigned char *bell)
{
    for (int i = 0; i < HANDLE_COUNT; i++) {
        struct topic_handle *handle = &end->handles[i];
        if (LOAD(&handle->state) == HANDLE_ATTACHED && handle_alive(end, i)) {
            continue;
        }
        if (lock_byte(end->lock_fd, i, F_WRLCK) != 0) {
            if (errno == EAGAIN || errno == EACCES) {
                continue;
            }
            unixipc_raise_errno(NULL);
            return -2;
        }
        if (LOAD(&handle->state) == HANDLE_ATTACHED) {
            STORE_SC(&handle->position, 0); /* its dead owner no longer holds anyone back */
            unixipc_bell_disarm(end->header->data_armed, i);
            unixipc_bell_disarm(end->header->space_armed, i);
        }
        STORE_SC(&handle->state, HANDLE_FREE);
        STORE_RELAXED(&handle->role, role);
        STORE_RELAXED(&handle->pid, (uint32_t)getpid());
        STORE_RELAXED(&handle->claim, 0);
        STORE_RELAXED(&handle->view, 0);
        STORE_RELAXED(&handle->position, 0);
        memcpy(handle->bell, bell, UNIXIPC_BELL_ID_BYTES);
        uint32_t used = LOAD(&end->header->handles_used);
        while (used < (uint32_t)i + 1 && !CAS(&end->header->handles_used, &used, (uint32_t)i + 1)) {
        }
        STORE_SC(&handle->state, HANDLE_ATTACHED);
        return i;
    }
    return -1;
}

/* _attach(buffer, lock_fd, bell_fd, bell_id, description, role) -> slot index (-1: full) */
static PyObject *end_attach(TopicEnd *end, PyObject *args, uint32_t *role_out)
{
    PyObject *buffer_object, *description;
    int lock_fd, bell_fd;
    unsigned int role;
    Py_buffer bell;
    if (!PyArg_ParseTuple(args, "Oiiy*UI:_attach", &buffer_object, &lock_fd, &bell_fd, &bell,
                          &description, &role)) {
        return NULL;
    }
    if (bell.len != UNIXIPC_BELL_ID_BYTES || end->has_buffer) {
        PyBuffer_Release(&bell);
        PyErr_SetString(PyExc_ValueError, "bad doorbell id, or already attached");
        return NULL;
    }
    if (PyObject_GetBuffer(buffer_object, &end->buffer, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&bell);
        return NULL;
    }
    end->has_buffer = 1;
    Py_INCREF(description);
    Py_XSETREF(end->description, description);
    struct topic_header *header = end->buffer.buf;
    const char *problem = ((uintptr_t)end->buffer.buf % 4096) != 0
                              ? "its mapping is not page-aligned"
                              : check_layout(header, end->buffer.len);
    if (problem != NULL) {
        PyBuffer_Release(&bell);
        PyBuffer_Release(&end->buffer);
        end->has_buffer = 0;
        return unixipc_raise_error("IPCError", NULL, 0, "%U is not a usable unixipc topic: %s",
                                   description, problem);
    }
    end->handles = (struct topic_handle *)((char *)header + HEADER_BYTES);
    end->data = (char *)header + DATA_OFFSET;
    end->capacity = header->capacity;
    end->stride = header->stride;
    end->max_message = header->max_message;
    end->history = header->history;
    end->lock_fd = lock_fd;
    end->bell_fd = bell_fd;
    end->spin_ns = SPIN_START_NS;
    end->header = header;
    end->slot = -1;
    int index = take_handle(end, role, bell.buf);
    PyBuffer_Release(&bell);
    if (index == -2) {
        return NULL;
    }
    end->slot = index;
    *role_out = role;
    return PyLong_FromLong(index);
}

/* Leave: free our slot (our lock byte goes when Python closes lock_fd). */
static PyObject *end_detach(TopicEnd *end)
{
    if (end->header != NULL && end->slot >= 0 && !end->forked) {
        struct topic_handle *handle = &end->handles[end->slot];
        unixipc_bell_disarm(end->header->data_armed, end->slot);
        unixipc_bell_disarm(end->header->space_armed, end->slot);
        STORE_SC(&handle->position, 0);
        STORE_SC(&handle->claim, 0);
        STORE_SC(&handle->view, 0);
        STORE_SC(&handle->state, HANDLE_FREE);
        ring_bells(end, end->header->space_armed); /* a blocking subscriber no longer holds */
    }
    end->header = NULL;
    end->handles = NULL;
    end->data = NULL;
    end->slot = -1;
    if (end->has_buffer) {
        PyBuffer_Release(&end->buffer);
        end->has_buffer = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *end_begin_close(TopicEnd *end)
{
    __atomic_store_n(&end->closing, 1, __ATOMIC_SEQ_CST);
    if (end->header != NULL && end->busy && end->slot >= 0) {
        unixipc_bell_ring_one(end->bell_fd, end->handles[end->slot].bell);
    }
    return PyLong_FromLong(end->busy);
}

static void end_dealloc(TopicEnd *end)
{
    PyObject_GC_UnTrack(end);
    if (end->has_buffer) {
        PyBuffer_Release(&end->buffer);
        end->has_buffer = 0;
    }
    Py_CLEAR(end->description);
    PyTypeObject *type = Py_TYPE(end);
    type->tp_free((PyObject *)end);
    Py_DECREF(type);
}

/* The buffer's exporter is not visited, for the reason given at Ring_traverse in
 * ring.c: visited, a collection that found it in the same garbage as us (a topic
 * and its ends refer to each other) could clear the memoryview while we still hold
 * its buffer, and our dealloc's release would then crash. */
static int end_traverse(TopicEnd *end, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(end));
    return 0;
}

static PyObject *end_get_max_message(TopicEnd *end, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(end->max_message);
}

/* Wrappers typed for each class. */
static PyObject *Publisher_attach(PublisherObject *self, PyObject *args)
{
    uint32_t role = 0;
    PyObject *result = end_attach(&self->end, args, &role);
    self->bound = self->end.capacity;
    return result;
}

static PyObject *Subscriber_attach(SubscriberObject *self, PyObject *args)
{
    uint32_t role = 0;
    PyObject *result = end_attach(&self->end, args, &role);
    self->drop = (role & ROLE_DROP) != 0;
    return result;
}

/* _place(history) -> None: choose where this new subscriber starts reading:
 * up to `history` messages back. It announces a position first, then reads the
 * tail again: a publisher that did not see the announcement claimed before that
 * second look, so every message from there on is ours (earlier ones: history,
 * kept if no publisher overwrote them meanwhile). */
static PyObject *Subscriber_place(SubscriberObject *self, PyObject *arg)
{
    TopicEnd *end = &self->end;
    unsigned long long history = PyLong_AsUnsignedLongLong(arg);
    if (history == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (end->header == NULL || end->slot < 0) {
        return unixipc_raise_error("ClosedResourceError", NULL, 0, "%U is closed",
                                   end->description);
    }
    uint64_t tail = load_tail(end);
    if (tail == 0) {
        return raise_corrupt(end, "its tail is out of range");
    }
    if (history > end->history) {
        history = end->history;
    }
    uint64_t start = tail - history < end->capacity ? end->capacity : tail - history;
    STORE_SC(&end->handles[end->slot].position, start);
    uint64_t guaranteed = load_tail(end);
    self->position = start;
    self->guaranteed = guaranteed == 0 ? tail : guaranteed;
    Py_RETURN_NONE;
}

#define END_WRAPPERS(Type, prefix)                                                                 \
    static PyObject *prefix##_detach(Type *self, PyObject *Py_UNUSED(ignored))                    \
    {                                                                                             \
        return end_detach(&self->end);                                                            \
    }                                                                                             \
    static PyObject *prefix##_begin_close(Type *self, PyObject *Py_UNUSED(ignored))               \
    {                                                                                             \
        return end_begin_close(&self->end);                                                       \
    }                                                                                             \
    static PyObject *prefix##_busy(Type *self, PyObject *Py_UNUSED(ignored))                      \
    {                                                                                             \
        return PyLong_FromLong(self->end.busy);                                                   \
    }                                                                                             \
    static PyObject *prefix##_forked(Type *self, PyObject *Py_UNUSED(ignored))                    \
    {                                                                                             \
        self->end.forked = 1;                                                                     \
        self->end.busy = 0;                                                                       \
        Py_RETURN_NONE;                                                                           \
    }                                                                                             \
    static PyObject *prefix##_get_max_message(Type *self, void *closure)                          \
    {                                                                                             \
        return end_get_max_message(&self->end, closure);                                          \
    }                                                                                             \
    static void prefix##_dealloc(Type *self)                                                      \
    {                                                                                             \
        end_dealloc(&self->end);                                                                  \
    }                                                                                             \
    static int prefix##_traverse(Type *self, visitproc visit, void *arg)                          \
    {                                                                                             \
        return end_traverse(&self->end, visit, arg);                                              \
    }

END_WRAPPERS(PublisherObject, Publisher)
END_WRAPPERS(SubscriberObject, Subscriber)

#define VECTOR_METHOD(name, function, doc)                                                        \
    {name, (PyCFunction)(void (*)(void))(function), METH_FASTCALL | METH_KEYWORDS, doc}
#define END_METHODS(prefix)                                                                       \
    {"_detach", (PyCFunction)prefix##_detach, METH_NOARGS, "Leave the topic and unmap."},         \
        {"_begin_close", (PyCFunction)prefix##_begin_close, METH_NOARGS,                          \
         "Make waiting calls give up; return how many are in progress."},                         \
        {"_busy", (PyCFunction)prefix##_busy, METH_NOARGS, "How many calls are in progress."},    \
        {"_forked", (PyCFunction)prefix##_forked, METH_NOARGS,                                    \
         "In a child after fork: this copy belongs to the parent."},                              \
        {"_attach", (PyCFunction)prefix##_attach, METH_VARARGS,                                   \
         "_attach(buffer, lock_fd, bell_fd, bell_id, description, role) -> slot (-1: full)"}

static PyMethodDef Publisher_methods[] = {
    VECTOR_METHOD("publish", Publisher_publish,
                  "publish($self, /, data, *, timeout=None)\n--\n\n"
                  "Publish one message (any bytes-like object) to every subscriber.\n\n"
                  "Waits while a blocking subscriber is a whole capacity behind.\n\n"
                  "Raises:\n"
                  "    MessageTooLarge: data is longer than max_message_size (nothing sent).\n"
                  "    WouldBlock: timeout=0 and the topic is full.\n"
                  "    TimeoutExpired: still full when the timeout ran out.\n"
                  "    ClosedResourceError: this publisher is closed."),
    VECTOR_METHOD("_loan_take", Publisher_loan_take,
                  "_loan_take($self, /, size, *, timeout=None)\n--\n\n"
                  "Claim a message slot for loan(); return the payload's offset."),
    {"_loan_finish", (PyCFunction)Publisher_loan_finish, METH_O,
     "_loan_finish(publish): commit the loan (True) or abandon it (False)."},
    {"ready", (PyCFunction)Publisher_ready, METH_NOARGS,
     "ready($self, /)\n--\n\n"
     "True if publish(timeout=0) would not find the topic full now. When False,\n"
     "fileno() becomes readable once that may have changed."},
    END_METHODS(Publisher),
    {NULL, NULL, 0, NULL},
};

static PyMethodDef Subscriber_methods[] = {
    VECTOR_METHOD("receive", Subscriber_receive,
                  "receive($self, /, *, timeout=None)\n--\n\n"
                  "Return the next message, waiting for one.\n\n"
                  "Raises:\n"
                  "    MessagesMissed: this (dropping) subscriber was overtaken; .count says how\n"
                  "        many messages it lost. The next receive returns the next message.\n"
                  "    WouldBlock: timeout=0 and no message is waiting.\n"
                  "    TimeoutExpired: none came before the timeout ran out.\n"
                  "    ClosedResourceError: this subscriber is closed."),
    VECTOR_METHOD("receive_into", Subscriber_receive_into,
                  "receive_into($self, /, buffer, *, timeout=None)\n--\n\n"
                  "Copy the next message into a writable buffer; return its length.\n\n"
                  "Raises:\n"
                  "    MessageTooLarge: the message is longer than the buffer (it stays).\n"
                  "    MessagesMissed, WouldBlock, TimeoutExpired, ClosedResourceError:\n"
                  "        as receive()."),
    VECTOR_METHOD("receive_many", Subscriber_receive_many,
                  "receive_many($self, /, max_count, *, timeout=None)\n--\n\n"
                  "Wait for at least one message, then return up to max_count that are ready.\n\n"
                  "Raises:\n"
                  "    MessagesMissed, WouldBlock, TimeoutExpired, ClosedResourceError:\n"
                  "        as receive() (a gap after some messages is reported by the next call)."),
    VECTOR_METHOD("_view_take", Subscriber_view_take,
                  "_view_take($self, /, *, timeout=None)\n--\n\n"
                  "Hold the next message in place for receive_view(): (offset, length)."),
    {"_view_release", (PyCFunction)Subscriber_view_release, METH_NOARGS,
     "Let go of the message of receive_view()."},
    {"_place", (PyCFunction)Subscriber_place, METH_O,
     "_place(history): start up to history messages back."},
    {"ready", (PyCFunction)Subscriber_ready, METH_NOARGS,
     "ready($self, /)\n--\n\n"
     "True if receive(timeout=0) would not raise WouldBlock now. When False,\n"
     "fileno() becomes readable once a message may have come."},
    END_METHODS(Subscriber),
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Publisher_getset[] = {
    {"max_message_size", (getter)Publisher_get_max_message, NULL,
     "The largest message the topic carries, in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyGetSetDef Subscriber_getset[] = {
    {"max_message_size", (getter)Subscriber_get_max_message, NULL,
     "The largest message the topic carries, in bytes.", NULL},
    {"missed", (getter)Subscriber_get_missed, NULL,
     "How many messages this subscriber lost to publishers overtaking it, in total.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Publisher_slots[] = {
    {Py_tp_doc, "The native half of unixipc.topic.Publisher (private)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, Publisher_dealloc},
    {Py_tp_traverse, Publisher_traverse},
    {Py_tp_methods, Publisher_methods},
    {Py_tp_getset, Publisher_getset},
    {0, NULL},
};

static PyType_Slot Subscriber_slots[] = {
    {Py_tp_doc, "The native half of unixipc.topic.Subscriber (private)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, Subscriber_dealloc},
    {Py_tp_traverse, Subscriber_traverse},
    {Py_tp_methods, Subscriber_methods},
    {Py_tp_getset, Subscriber_getset},
    {0, NULL},
};

static PyType_Spec Publisher_spec = {
    .name = "unixipc._native.TopicPublisherCore",
    .basicsize = sizeof(PublisherObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Publisher_slots,
};

static PyType_Spec Subscriber_spec = {
    .name = "unixipc._native.TopicSubscriberCore",
    .basicsize = sizeof(SubscriberObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Subscriber_slots,
};

/* ------------------------------------------------------------------ leases */

/* A piece of the mapping lent to the user (a loan or a view). It holds its own
 * export of the mapping, so the memory cannot be unmapped while any view of it
 * lives, and counts the exports it gives: after the user's view is released,
 * revoke() tells whether a derived view (a slice, a NumPy array) outlived it. */
typedef struct {
    PyObject_HEAD
    Py_buffer mapping;
    int has_mapping;
    char *start;
    Py_ssize_t length;
    int readonly;
    int revoked;
    Py_ssize_t exports;
} LeaseObject;

static PyObject *Lease_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *buffer_object;
    Py_ssize_t offset, length;
    int readonly;
    static char *keywords[] = {"buffer", "offset", "length", "readonly", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Onnp:BufferLease", keywords, &buffer_object,
                                     &offset, &length, &readonly)) {
        return NULL;
    }
    LeaseObject *self = (LeaseObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (PyObject_GetBuffer(buffer_object, &self->mapping, PyBUF_WRITABLE) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->has_mapping = 1;
    if (offset < 0 || length < 0 || offset > self->mapping.len - length) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_ValueError, "the lease does not fit in the mapping");
        return NULL;
    }
    self->start = (char *)self->mapping.buf + offset;
    self->length = length;
    self->readonly = readonly;
    return (PyObject *)self;
}

static int Lease_getbuffer(LeaseObject *self, Py_buffer *view, int flags)
{
    if (self->revoked) {
        PyErr_SetString(PyExc_BufferError, "this loan or view has ended");
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->start, self->length, self->readonly,
                          flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void Lease_releasebuffer(LeaseObject *self, Py_buffer *Py_UNUSED(view))
{
    self->exports--;
}

/* revoke() -> bool: lend no more; True if no view of the lease is alive. */
static PyObject *Lease_revoke(LeaseObject *self, PyObject *Py_UNUSED(ignored))
{
    self->revoked = 1;
    return PyBool_FromLong(self->exports == 0);
}

static void Lease_dealloc(LeaseObject *self)
{
    if (self->has_mapping) {
        PyBuffer_Release(&self->mapping);
    }
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef Lease_methods[] = {
    {"revoke", (PyCFunction)Lease_revoke, METH_NOARGS,
     "revoke() -> bool: lend no more views; True if none is alive."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Lease_slots[] = {
    {Py_tp_doc, "BufferLease(buffer, offset, length, readonly): a piece of a mapping lent out "
                "(private)."},
    {Py_tp_new, Lease_new},
    {Py_tp_dealloc, Lease_dealloc},
    {Py_tp_methods, Lease_methods},
    {Py_bf_getbuffer, Lease_getbuffer},
    {Py_bf_releasebuffer, Lease_releasebuffer},
    {0, NULL},
};

static PyType_Spec Lease_spec = {
    .name = "unixipc._native.BufferLease",
    .basicsize = sizeof(LeaseObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Lease_slots,
};

/* ------------------------------------------------------------------ module functions */

static uint64_t stride_for(uint64_t max_message)
{
    return (SLOT_HEADER + max_message + LINE - 1) & ~(uint64_t)(LINE - 1);
}

/* topic_size(capacity, max_message) -> bytes of shared memory for such a topic. */
static PyObject *native_topic_size(PyObject *Py_UNUSED(module), PyObject *args)
{
    unsigned long long capacity, max_message;
    if (!PyArg_ParseTuple(args, "KK:topic_size", &capacity, &max_message)) {
        return NULL;
    }
    if (capacity < MIN_CAPACITY || capacity > MAX_CAPACITY || max_message > MAX_MESSAGE ||
        capacity * stride_for(max_message) > MAX_DATA_BYTES) {
        PyErr_SetString(PyExc_ValueError, "capacity or max_message_size out of range");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(DATA_OFFSET + capacity * stride_for(max_message));
}

/* topic_initialize(buffer, capacity, max_message, history): lay out a fresh,
 * zero-filled object; the magic number is stored last. */
static PyObject *native_topic_initialize(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer buffer;
    unsigned long long capacity, max_message, history;
    if (!PyArg_ParseTuple(args, "w*KKK:topic_initialize", &buffer, &capacity, &max_message,
                          &history)) {
        return NULL;
    }
    uint64_t stride = stride_for(max_message);
    if (capacity < MIN_CAPACITY || capacity > MAX_CAPACITY || max_message > MAX_MESSAGE ||
        history >= capacity || capacity * stride > MAX_DATA_BYTES ||
        (uint64_t)buffer.len < DATA_OFFSET + capacity * stride) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "the topic's sizes do not fit the buffer or the limits");
        return NULL;
    }
    struct topic_header *header = buffer.buf;
    memset(buffer.buf, 0, DATA_OFFSET);
    header->version = TOPIC_VERSION;
    header->header_bytes = HEADER_BYTES;
    header->capacity = capacity;
    header->stride = stride;
    header->max_message = max_message;
    header->history = history;
    header->data_offset = DATA_OFFSET;
    header->handle_count = HANDLE_COUNT;
    header->handle_bytes = HANDLE_BYTES;
    header->tail = capacity; /* sequence numbers start at capacity */
    header->bound = capacity;
    /* Slot i holds "message i, abandoned": the first message for it is i + capacity. */
    char *data = (char *)buffer.buf + DATA_OFFSET;
    for (uint64_t i = 0; i < capacity; i++) {
        struct topic_slot *slot = (struct topic_slot *)(data + i * stride);
        slot->stamp = make_stamp(i, STATE_ABANDONED);
        slot->length = 0;
    }
    __atomic_store_n(&header->magic, TOPIC_MAGIC, __ATOMIC_SEQ_CST);
    PyBuffer_Release(&buffer);
    Py_RETURN_NONE;
}

/* topic_snapshot(buffer, fd) -> (capacity, max_message, history, published,
 * publishers, subscribers): fd is any descriptor of the object (for liveness). */
static PyObject *native_topic_snapshot(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer buffer;
    int fd;
    if (!PyArg_ParseTuple(args, "y*i:topic_snapshot", &buffer, &fd)) {
        return NULL;
    }
    struct topic_header *header = buffer.buf;
    const char *problem = check_layout(header, buffer.len);
    if (problem != NULL) {
        PyBuffer_Release(&buffer);
        return unixipc_raise_error("IPCError", NULL, 0, "not a usable unixipc topic: %s", problem);
    }
    TopicEnd view = {.header = header,
                     .handles = (struct topic_handle *)((char *)header + HEADER_BYTES),
                     .capacity = header->capacity,
                     .lock_fd = fd,
                     .slot = -1};
    int publishers = 0, subscribers = 0;
    int used = handles_used(&view);
    for (int i = 0; i < used; i++) {
        struct topic_handle *handle = &view.handles[i];
        if (LOAD(&handle->state) != HANDLE_ATTACHED || !handle_alive(&view, i)) {
            continue;
        }
        uint32_t role = LOAD(&handle->role);
        publishers += (role & ROLE_PUBLISHER) != 0;
        subscribers += (role & ROLE_SUBSCRIBER) != 0;
    }
    uint64_t tail = load_tail(&view);
    PyObject *result = Py_BuildValue(
        "KKKKii", (unsigned long long)header->capacity, (unsigned long long)header->max_message,
        (unsigned long long)header->history,
        (unsigned long long)(tail == 0 ? 0 : tail - header->capacity), publishers, subscribers);
    PyBuffer_Release(&buffer);
    return result;
}

static PyObject *native_topic_test_stop(PyObject *Py_UNUSED(module), PyObject *args)
{
    int point;
    if (!PyArg_ParseTuple(args, "i:topic_test_stop", &point)) {
        return NULL;
    }
    test_stop_point = point;
    Py_RETURN_NONE;
}

static PyMethodDef topic_functions[] = {
    {"topic_size", native_topic_size, METH_VARARGS,
     "topic_size(capacity, max_message) -> int\n\nBytes of shared memory for such a topic."},
    {"topic_initialize", native_topic_initialize, METH_VARARGS,
     "topic_initialize(buffer, capacity, max_message, history) -> None\n\n"
     "Lay out a topic in zero-filled memory; the magic number is written last."},
    {"topic_snapshot", native_topic_snapshot, METH_VARARGS,
     "topic_snapshot(buffer, fd) -> (capacity, max_message, history, published, publishers, "
     "subscribers)"},
    {"topic_test_stop", native_topic_test_stop, METH_VARARGS,
     "topic_test_stop(point) -> None\n\n"
     "Tests only: SIGSTOP this process when it reaches the given point (0: never)."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_topic(PyObject *module)
{
    PyType_Spec *specs[] = {&Publisher_spec, &Subscriber_spec, &Lease_spec};
    const char *names[] = {"TopicPublisherCore", "TopicSubscriberCore", "BufferLease"};
    for (int i = 0; i < 3; i++) {
        PyObject *type = PyType_FromModuleAndSpec(module, specs[i], NULL);
        if (type == NULL || PyModule_AddObject(module, names[i], type) < 0) {
            Py_XDECREF(type);
            return -1;
        }
    }
    if (PyModule_AddFunctions(module, topic_functions) < 0 ||
        PyModule_AddIntConstant(module, "TOPIC_ROLE_PUBLISHER", ROLE_PUBLISHER) < 0 ||
        PyModule_AddIntConstant(module, "TOPIC_ROLE_SUBSCRIBER", ROLE_SUBSCRIBER) < 0 ||
        PyModule_AddIntConstant(module, "TOPIC_ROLE_DROP", ROLE_DROP) < 0 ||
        PyModule_AddIntConstant(module, "TOPIC_MAX_HANDLES", HANDLE_COUNT) < 0 ||
        PyModule_AddIntConstant(module, "TOPIC_MAX_CAPACITY", (long)MAX_CAPACITY) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "TOPIC_MAX_MESSAGE", (long)MAX_MESSAGE);
}
