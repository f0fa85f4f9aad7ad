/* The shared-memory ring's algorithm in plain C: no Python here.
 *
 * ring_core.c claims, commits, consumes, waits and recovers; ring.c binds it to
 * Python (arguments, exceptions, the GIL); tests/ring_core_harness.c drives it
 * directly. Layout and protocol: docs/design.md, "The shared-memory ring".
 *
 * The memory is shared with processes that may be buggy or hostile: every
 * position and length read from it is read once into a local, checked against
 * the layout, and only that copy is used; an impossible state is reported as
 * RING_CORRUPT (ring->problem says what), never acted upon.
 */
#ifndef UNIXIPC_RING_CORE_H
#define UNIXIPC_RING_CORE_H

#include <stddef.h>
#include <stdint.h>

#define RING_MAGIC 0x31474E4952585855ULL /* "UXXRING1" read as little-endian */
#define RING_VERSION 3 /* 2: mixed tags; 3: armed words, wake one, doorbells */
#define RING_LINE 64
#define RING_HEADER_BYTES 4096
#define RING_SLOT_COUNT 128
#define RING_SLOT_BYTES 64
#define RING_DATA_OFFSET (RING_HEADER_BYTES + RING_SLOT_COUNT * RING_SLOT_BYTES)
#define RING_RECORD_HEADER 16
#define RING_RECORD_ALIGN 16
#define RING_MIN_CAPACITY 1024
#define RING_MAX_CAPACITY (1ULL << 31)
/* Positions only grow; one this large means damage (2^63 bytes: 29 years at
 * 10 GB/s), and below it no sum of a position and a size can overflow. */
#define RING_POSITION_LIMIT (1ULL << 63)
/* Doorbells (readiness descriptors, doorbell.h): mask words per direction and
 * the bytes of each handle's doorbell name. */
#define RING_BELL_WORDS 2
#define RING_BELL_ID_BYTES 16
/* Records (messages and padding) that one receive_many takes at most. */
#define RING_BATCH 512

#define RING_PRODUCER 1U
#define RING_CONSUMER 2U

/* Deadlines are CLOCK_MONOTONIC nanoseconds; these two are special. */
#define RING_NO_DEADLINE ((int64_t)-1)
#define RING_TRY_ONCE ((int64_t)0)

/* One direction's waking: sleepers on the futex, and doorbells (ready(), fileno()). */
struct ring_wake {
    uint32_t futex;   /* bumped before every FUTEX_WAKE */
    uint32_t waiters; /* handles between registering to sleep and leaving */
    uint32_t armed;   /* 1: a sleeper needs a FUTEX_WAKE; whoever exchanges it to 0 makes it */
    uint32_t waker_cpu;                /* sched_getcpu() of the last waker, + 1 */
    uint64_t bells[RING_BELL_WORDS];   /* bit i: handle slot i's doorbell is armed */
};

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
    _Alignas(RING_LINE) uint64_t tail; /* producers: end of the last claim */
    _Alignas(RING_LINE) uint64_t head; /* consumers: start of the first unclaimed record */
    _Alignas(RING_LINE) uint64_t free; /* consumers: everything before it may be overwritten */
    /* How waiters sleep and are woken: one line for consumers waiting for data,
     * one for producers waiting for space. */
    _Alignas(RING_LINE) struct ring_wake data;
    _Alignas(RING_LINE) struct ring_wake space;
    _Alignas(RING_LINE) uint32_t producer_event; /* (sequence << 2) | RING_EVENT_* */
    uint32_t consumer_event;
    /* Each handle slot's doorbell name (its slot in the array below is too full). */
    _Alignas(RING_LINE) unsigned char bell_ids[RING_SLOT_COUNT][RING_BELL_ID_BYTES];
};
_Static_assert(sizeof(struct ring_header) <= RING_HEADER_BYTES, "header fits its page");

struct ring_slot {
    uint32_t state;
    uint32_t roles;
    uint32_t pid;
    uint32_t waiting; /* sleepers of this handle: data in the low half, space in the high */
    uint64_t claim_start, claim_end; /* producer: the range being claimed or written */
    uint64_t read_start, read_end;   /* consumer: records claimed, being copied */
    uint64_t view_start, view_end;   /* consumer: the record held by receive_view() */
};
_Static_assert(sizeof(struct ring_slot) == RING_SLOT_BYTES, "slot is one cache line");

struct ring_record {
    uint32_t length; /* payload bytes */
    uint32_t size;   /* whole record in the ring, header and padding included */
    uint64_t tag;    /* mix(position ^ key) | kind: stored last, it commits the record */
};
_Static_assert(sizeof(struct ring_record) == RING_RECORD_HEADER, "record header");

enum ring_status {
    RING_OK,
    RING_TIMEOUT,     /* the deadline passed (at once for RING_TRY_ONCE: would block) */
    RING_CLOSED,      /* ring_begin_close() was called while this call waited */
    RING_PEER_CLOSED, /* every peer of the other role closed the ring */
    RING_PEER_DIED,   /* every peer of the other role is gone, one of them by dying */
    RING_INTERRUPTED, /* waiter->interrupted() asked to stop */
    RING_CORRUPT,     /* an impossible state: ring->problem and ring->problem_position */
    RING_TOO_LARGE,   /* a message longer than ring->max_message: nothing was sent */
    RING_REFUSED,     /* the sink refused the message (it stays in the ring) */
    RING_NO_SLOT,     /* this handle holds no slot: take one first */
};

/* How a wait lets its caller's lock go (the GIL) and hears about signals.
 * Every member may be NULL. */
struct ring_waiter {
    void *context;
    void (*unlock)(void *context);     /* before spinning and sleeping */
    void (*lock)(void *context);       /* after */
    int (*interrupted)(void *context); /* after EINTR, locked: nonzero ends the wait */
};

/* Where a message of `length` bytes goes: called (with the caller's lock held)
 * before the message is claimed, so that a refusal (NULL: no memory, a buffer
 * too small) loses nothing. `index` numbers the messages of one receive from 0;
 * index 0 always starts afresh (a lost race makes the core look again). */
typedef void *(*ring_sink)(void *context, size_t index, uint32_t length);

/* A message for ring_send_many. */
struct ring_message {
    const void *bytes;
    uint64_t length;
};

/* What ring_snapshot reports. */
struct ring_snapshot {
    uint64_t used;     /* bytes between free and tail */
    uint64_t messages; /* committed messages waiting */
    int producers, consumers, attached;
};

/* A suspicion of damage that only a second look, later, may confirm. */
struct ring_suspicion {
    uint64_t position, tag;
    int64_t since_ns; /* 0: nothing suspected */
};

/* How the binding rings doorbells (ring_core.c stays free of sockets): ring the
 * doorbell named `id`, and drop what our own doorbell received. */
struct ring_bells {
    void (*ring)(void *context, const unsigned char *id);
    void (*drain)(void *context);
    void *context;
};

/* One attached handle: process-local, never in the shared memory. The layout
 * fields are the validated copies made by ring_attach. */
struct ring {
    struct ring_header *header;
    struct ring_slot *slots;
    char *data;
    uint64_t capacity, key, max_message;
    int lock_fd;    /* our liveness lock is held through it */
    int slot;       /* our slot; -1: none */
    uint32_t roles; /* roles already published in our slot */
    int closing;    /* ring_begin_close() was called */
    int view_open;
    uint64_t view_start, view_end;
    uint64_t cached_free; /* producer's last look at free */
    uint64_t seen_head;   /* consumer's last look at head (it only grows) */
    int damaged;          /* damage was found where it could not be reported: report it next */
    int64_t spin_ns;      /* adaptive spin before sleeping */
    int sleep_first;      /* waits left that skip the spin (peer on our CPU) */
    int64_t last_check_ns;
    uint32_t seen_producer_event, seen_consumer_event;
    struct ring_suspicion head_suspicion, free_suspicion;
    const char *problem; /* after RING_CORRUPT: what is wrong, and where */
    uint64_t problem_position;
    int pass_on;                   /* woken by a wake-one while others sleep: pass it on */
    const struct ring_bells *bells; /* NULL: no doorbell rung from or armed by this handle */
    int has_bell;                  /* our slot's doorbell id is published: arm it on waits */
    int retried;                   /* a timeout=0 call already looked again after arming */
    char attach_problem[96];
};

/* Lay out a ring in `length` zero-filled bytes; the magic number is stored last.
 * Returns 0, or -1 if capacity does not fit the buffer or the limits. */
int ring_layout(void *base, size_t length, uint64_t capacity, uint64_t key);

/* Check a mapping's layout and attach `ring` to it (no slot yet). Returns NULL,
 * or what makes it unusable. `base` must be page-aligned. */
const char *ring_attach(struct ring *ring, void *base, size_t length);

/* Take a free slot (or a dead one that nothing needs any more) with `roles`,
 * its liveness lock byte held through `lock_fd`. Does not change ring->slot.
 * Returns its index; -1 if none is free; -2 with errno set. */
int ring_claim_slot(struct ring *ring, int lock_fd, uint32_t roles);

/* Make a slot claimed (by a parent before fork) ours. Returns 0, -1 if out of range. */
int ring_adopt_slot(struct ring *ring, int index, int lock_fd);

/* Publish roles (RING_PRODUCER | RING_CONSUMER) in our slot. */
void ring_publish_roles(struct ring *ring, uint32_t roles);

/* Clear the roles of another slot (one reserved for a child that stayed a bystander). */
void ring_revoke_slot(struct ring *ring, int index);

/* Leave: free our slot; with announce, the last producer (consumer) tells the
 * consumers (producers) that the ring was closed. */
void ring_detach(struct ring *ring, int announce);

/* Make waiting calls give up with RING_CLOSED. */
void ring_begin_close(struct ring *ring);

int ring_send(struct ring *ring, const void *payload, uint64_t length, int64_t deadline,
              const struct ring_waiter *waiter);

/* Send every message, claiming space for as many as fit at once; *sent tells
 * how many went out, also on failure. */
int ring_send_many(struct ring *ring, const struct ring_message *messages, size_t count,
                   size_t *sent, int64_t deadline, const struct ring_waiter *waiter);

/* Take the next message into what sink(context, 0, length) returns. */
int ring_receive(struct ring *ring, ring_sink sink, void *context, uint32_t *length,
                 int64_t deadline, const struct ring_waiter *waiter);

/* Wait for a message, then take up to max_count that are ready (at most
 * RING_BATCH records, and beyond the first at most a quarter of the capacity). */
int ring_receive_many(struct ring *ring, size_t max_count, ring_sink sink, void *context,
                      size_t *count, int64_t deadline, const struct ring_waiter *waiter);

/* Claim the next message and leave it in place: *offset is where its payload
 * starts, from the start of the mapping. One at a time; ring_view_release gives
 * it back. */
int ring_view_take(struct ring *ring, uint64_t *offset, uint32_t *length, int64_t deadline,
                   const struct ring_waiter *waiter);
void ring_view_release(struct ring *ring);

/* Publish our doorbell's name in our slot; from now on a wait that gives up
 * (timeout 0) and ring_ready() arm it. */
void ring_set_bell(struct ring *ring, const unsigned char *id);

/* Would a receive (for_space 0) or a send of `size` bytes (for_space 1) succeed
 * or fail without waiting? 1 yes, 0 no: then our doorbell (drained first) is
 * armed and rings when that may have changed. Dead peers are looked for at
 * most every 50 ms, as timeout=0 calls do. */
int ring_ready(struct ring *ring, int for_space, uint64_t size);

/* Count producers and consumers (burying dead handles) and what is waiting. */
int ring_snapshot(struct ring *ring, struct ring_snapshot *out);

/* Tests only: SIGSTOP the process at one of these points (0: never). */
enum {
    RING_STOP_NEVER,
    RING_STOP_PRODUCER_CLAIMED,
    RING_STOP_PRODUCER_HALF_WRITTEN,
    RING_STOP_PRODUCER_WRITTEN,
    RING_STOP_CONSUMER_CLAIMED,
    RING_STOP_CONSUMER_COPIED,
    RING_STOP_CONSUMER_WOKEN, /* woken by a wake-one while others sleep, not yet passed on */
};
extern int ring_test_stop_point;

#endif
