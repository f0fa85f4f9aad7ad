/* Doorbells: readiness descriptors for objects that live in shared memory.
 *
 * A handle that is about to sleep "arms": it sets its bit in an armed mask in
 * the shared memory (seq_cst), looks once more for what it waits for, and then
 * waits on its doorbell: a UNIX datagram socket bound to the abstract address
 * named by 16 random bytes that it publishes in the shared memory. A peer that
 * makes progress (commits a message, frees space) reads the mask after its own
 * seq_cst commit and, only if a bit is set, takes the mask (exchange with 0) and
 * sends one empty datagram to each armed handle. The fast path is one load that
 * finds 0: no system call. The doorbell's descriptor is what fileno() returns,
 * so poll, selectors, asyncio's add_reader and unixipc.wait watch shared memory
 * like a socket. A datagram only says "look again": a waiter drains its doorbell,
 * re-arms and re-checks, so spurious or stale rings cost a look, never a message.
 *
 * Memory needed by an adopter: UNIXIPC_BELL_MASK_WORDS 64-bit words per direction
 * (bit i = handle slot i, so at most 64 * UNIXIPC_BELL_MASK_WORDS handles), and
 * UNIXIPC_BELL_ID_BYTES bytes per handle slot for its doorbell's name.
 */
#ifndef UNIXIPC_DOORBELL_H
#define UNIXIPC_DOORBELL_H

#include "common.h"

#define UNIXIPC_BELL_ID_BYTES 16
#define UNIXIPC_BELL_MASK_WORDS 2

/* Mark handle `index` as about to sleep on this direction (a full barrier). */
static inline void unixipc_bell_arm(uint64_t *mask, int index)
{
    __atomic_fetch_or(&mask[index / 64], (uint64_t)1 << (index % 64), __ATOMIC_SEQ_CST);
}

/* Withdraw handle `index` (it stopped waiting without being rung). */
static inline void unixipc_bell_disarm(uint64_t *mask, int index)
{
    __atomic_fetch_and(&mask[index / 64], ~((uint64_t)1 << (index % 64)), __ATOMIC_SEQ_CST);
}

/* After a seq_cst commit: is anyone armed? (The fast path: loads only.) */
static inline int unixipc_bells_armed(uint64_t *mask)
{
    uint64_t any = 0;
    for (int word = 0; word < UNIXIPC_BELL_MASK_WORDS; word++) {
        any |= __atomic_load_n(&mask[word], __ATOMIC_SEQ_CST);
    }
    return any != 0;
}

/* Where handle `index` publishes its doorbell's name (NULL: not a valid handle). */
typedef const unsigned char *(*unixipc_bell_id_of)(void *context, int index);

/* Take the mask and ring every armed handle, sending from `sender_fd` (any
 * datagram socket of ours). Returns how many were rung. Never blocks or fails:
 * a full or vanished doorbell means its owner has a ring pending or is gone. */
int unixipc_bells_ring(uint64_t *mask, int sender_fd, unixipc_bell_id_of id_of, void *context);

/* Ring one doorbell by its name. */
void unixipc_bell_ring_one(int sender_fd, const unsigned char *id);

/* Read and drop every datagram waiting on our doorbell (non-blocking). */
void unixipc_bell_drain(int fd);

/* Wait until the doorbell is readable or the monotonic deadline passes (-1:
 * none). Call with the GIL released. Returns 1 readable, 0 deadline, -1 EINTR. */
int unixipc_bell_sleep(int fd, int64_t deadline_ns);


#endif
