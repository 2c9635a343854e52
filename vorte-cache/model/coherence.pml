/*
 * The invalidation protocol of vorte-cache, as a Promela model for spin.
 *
 * The state and the read path are here; the invalidations and the receiver in invalidations.pml;
 * the scenarios in scenarios.pml. What each part stands for, and the results: docs/model.md.
 * How to run it: scripts/check-model (spin -a, gcc, ./pan, once per scenario and per fix left
 * out).
 *
 * Compile-time switches (each defaults to 1, the protocol after issue 9's fixes):
 *   FIX_REFENCE          delete/flush fence again and drop L1 after the shared layers changed
 *   FIX_SET_REFENCE      set inserts into L1 under a fence record taken after its shared puts
 *   FIX_REFENCE_DETACHES the re-fence of a delete also detaches the key's flight again
 *   FIX_SET_DETACHES     a set detaches the key's flight when it writes L1
 *   FIX_FLIGHT_DETACH    an invalidation detaches the flight of the key
 *   FIX_TOMBSTONE_VERSION a fill's compare-and-set expects the exact content its load observed
 *                        (0: expects an empty slot, as before the fix; the tombstone is constant)
 *   FIX_TOMBSTONE_ID     every delete writes a tombstone of its own (0: one constant marker)
 *   FIX_BACKFILL_KEEPS_TOMBSTONE a back-fill (a copy of a lower layer's entry) never replaces a
 *                        tombstone in a layer above (0: it expects the observed content too)
 *   FIX_TAKEBACK_CONDITIONAL a fill taken back becomes a new tombstone, only if the slot still
 *                        holds its value (0: the slot is emptied, as remove_quietly does)
 *   FIX_L4_CAS           L4 has tombstones and compare-and-set (0: plain put and delete)
 *   FIX_CAS_FIRST        a fill writes L4 only after L2's compare-and-set succeeded
 *   FIX_GAP_DROPS_L1     a receiver that passes a gap drops L1, fences and tag versions
 *   FIX_TAG_MONOTONIC    a tag fetch does not overwrite a memo that changed while it ran
 *   FIX_TAG_NOTICE_REFETCH a Tag notice drops the memoised version, fetched again from the record
 *                        (0: the notice's version is memoised, whatever the order of notices)
 *   FIX_FLUSH_EPOCH      flush bumps an epoch every entry is stamped with (0: clears the layers)
 * and one scenario: SC_SET, SC_DELETE, SC_CROSS, SC_TAKEBACK, SC_GAP, SC_TAG or SC_FLUSH
 * (scenarios.pml).
 *
 * Properties, as assertions named by the ghost variable they test:
 *   no_resurrection   a read returns no value older than the one made current by an invalidation
 *                     that returned, in its process or (once applied or passed as a gap) in another
 *   read_your_writes  after set(k, v) returned in P, reads in P return v or newer
 *   gap_drops_l1      a receiver that moved past a lost message holds nothing in L1
 *   fill_after_delete a load's compare-and-set succeeds when the slot still holds what it observed
 *                     (a load that began after a delete is cached: finding 9)
 */

#ifndef FIX_REFENCE
#define FIX_REFENCE 1
#endif
#ifndef FIX_SET_REFENCE
#define FIX_SET_REFENCE 1
#endif
#ifndef FIX_REFENCE_DETACHES
#define FIX_REFENCE_DETACHES 1
#endif
#ifndef FIX_SET_DETACHES
#define FIX_SET_DETACHES 1
#endif
#ifndef FIX_FLIGHT_DETACH
#define FIX_FLIGHT_DETACH 1
#endif
#ifndef FIX_TOMBSTONE_VERSION
#define FIX_TOMBSTONE_VERSION 1
#endif
#ifndef FIX_TOMBSTONE_ID
#define FIX_TOMBSTONE_ID 1
#endif
#ifndef FIX_BACKFILL_KEEPS_TOMBSTONE
#define FIX_BACKFILL_KEEPS_TOMBSTONE 1
#endif
#ifndef FIX_TAKEBACK_CONDITIONAL
#define FIX_TAKEBACK_CONDITIONAL 1
#endif
#ifndef FIX_L4_CAS
#define FIX_L4_CAS 1
#endif
#ifndef FIX_CAS_FIRST
#define FIX_CAS_FIRST 1
#endif
#ifndef FIX_GAP_DROPS_L1
#define FIX_GAP_DROPS_L1 1
#endif
#ifndef FIX_TAG_MONOTONIC
#define FIX_TAG_MONOTONIC 1
#endif
#ifndef FIX_TAG_NOTICE_REFETCH
#define FIX_TAG_NOTICE_REFETCH 1
#endif
#ifndef FIX_FLUSH_EPOCH
#define FIX_FLUSH_EPOCH 1
#endif

/* What each scenario needs: keys, whether entries carry a tag or flush-epoch stamp, and how
 * many bus messages may be lost. */
#if defined(SC_GAP)
#define NK 2
#define LOSSES 1
#else
#define NK 1
#define LOSSES 0
#endif
#if defined(SC_TAG) || defined(SC_TAG2)
#define STAMPED 1
#define L1_STAMPED 1
#elif defined(SC_FLUSH)
#define STAMPED FIX_FLUSH_EPOCH
#define L1_STAMPED 0         /* the flush epoch is left out of L1 (engine/epoch.rs) */
#else
#define STAMPED 0
#define L1_STAMPED 0
#endif

#define NP 3                 /* processes (caches) */
#define IX(p, k) ((p) * NK + (k))

/* ---- slot contents: one byte, compared whole by compare-and-set ---------------------------- */
/* 0 empty; 1..63 a value: version v (1..7, from the database counter) stamped s (0..7, the tag
 * or flush-epoch version current when the value was produced); 64 + id a tombstone. */
#define EMPTY 0
#define VCODE(v, s) ((v) + 8 * (s))
#define IS_VAL(c) ((c) > 0 && (c) < 64)
#define IS_TOMB(c) ((c) >= 64)
#define VAL(c) ((c) % 8)
#define STAMP(c) ((c) / 8)
#define TOMB(id) (64 + (id))

/* ---- the database and the shared layers (store/redis, store/object) ------------------------ */
byte db[NK];                 /* the application's data: the current version of each key */
byte l2[NK];                 /* L2: tombstones and compare-and-set (Redis) */
byte l4[NK];                 /* L4: object storage; conditional only with FIX_L4_CAS */
byte l2_changes[NK];         /* ghost: every change of l2[k], for fill_after_delete */
byte tomb_ids;               /* the last tombstone id handed out */
byte authority = 1;          /* the tag (or flush epoch) version record (tags.rs) */
byte versions = 1;           /* the last version handed out: versions are never reused */

/* ---- per process: L1, fence, flights, tag memo (l1.rs, fence.rs, flight.rs, tags.rs) --------- */
byte l1[NP * NK];            /* L1 entries, slot codes (never a tombstone) */
byte seq[NP];                /* Fence::seq */
byte fenced_at[NP * NK];     /* Fence per-key record */
byte fence_floor[NP];        /* Fence::floor, set by record_all */
byte flight[NP * NK];        /* Flights::map: the id of the key's flight, 0 for none */
#define MAXF 6
byte outcome[MAXF];          /* a flight's outcome: PENDING or the value */
byte holders[MAXF];          /* the leader and waiters still holding flight f (ids are reused) */
#define PENDING 0
byte memo[NP];               /* TagIndex memo of the one tag: 0 for not memoised */
byte memo_gen[NP];           /* moves with every change of memo[p] */

/* ---- ghosts: what a read may return ---------------------------------------------------------- */
byte floor_inv[NP * NK];     /* the version the last invalidation of k known to p made current */
byte floor_ryw[NP * NK];     /* the version of p's last set of k that returned */
bool no_resurrection = true;
bool read_your_writes = true;
bool gap_drops_l1 = true;
bool fill_after_delete = true;

/* ---- the bus (bus/redis.rs, bus/streams.rs): per receiver a FIFO that may lose messages ----- */
#define KEYS 1
#define TAG 2
#define FLUSH 3
chan bus[NP] = [4] of { byte, byte, byte, byte, byte };  /* kind, key, version, ghost, number */
byte sent[NP];               /* messages numbered per receiver (stream ids) */
byte seen[NP];               /* the last number the receiver read */
byte losses = LOSSES;        /* how many messages the bus may still lose */
byte lost_floor[NP * NK];    /* ghost: the floors carried by lost messages */

#define FENCED(p, k, t) ((t) < fence_floor[p] || fenced_at[IX(p, k)] > (t))
#define MAX(a, b) ((a) > (b) -> (a) : (b))

/* Fence::record */
inline fence_record(p, k) {
    seq[p]++;
    fenced_at[IX(p, k)] = seq[p]
}

/* Fence::record_all */
inline fence_record_all(p) {
    seq[p]++;
    fence_floor[p] = seq[p];
    for (i : 0 .. NK - 1) { fenced_at[IX(p, i)] = 0 }
}

/* Flights::forget */
inline forget_flight(p, k) {
#if FIX_FLIGHT_DETACH
    flight[IX(p, k)] = 0
#else
    skip
#endif
}

/* TagIndex::memo_set (through invalidate and learn) and forget_all */
inline memo_set(p, v) { atomic { memo[p] = v; memo_gen[p]++ } }
inline memo_forget(p) { atomic { memo[p] = 0; memo_gen[p]++ } }

/* tags.rs TagIndex::current, into `cur`: the memo, else the record (one await), memoised. */
inline current(p) {
    if
    :: atomic { memo[p] != 0 -> cur = memo[p] }
    :: atomic { memo[p] == 0 -> gen = memo_gen[p]; cur = authority }   /* store.get(Slot::Tag) */
        atomic {
#if FIX_TAG_MONOTONIC
            if
            :: memo_gen[p] == gen -> memo_set(p, cur)
            :: else -> if :: memo[p] != 0 -> cur = memo[p] :: else -> skip fi
            fi
#else
            memo_set(p, cur)
#endif
        }
    fi
}

/* With stamps, checking them may fetch the tag version (an await of its own): the check comes
 * LATER, in steps of its own; without, it is part of the step that read the entry (NOW). */
#if STAMPED
#define NOW(x) skip
#define LATER(x) x
#else
#define NOW(x) x
#define LATER(x) skip
#endif
#if L1_STAMPED
#define L1_NOW(x) skip
#define L1_LATER(x) x
#else
#define L1_NOW(x) x
#define L1_LATER(x) skip
#endif

/* `res` becomes the value of slot code x if x is a value with current stamps: read.rs
 * Engine::read_tier's checks (TagIndex::check). */
inline take_if_valid(p, x) {
#if STAMPED
    if
    :: IS_VAL(x) -> current(p); if :: STAMP(x) == cur -> res = VAL(x) :: else -> skip fi
    :: else -> skip
    fi
#else
    if :: IS_VAL(x) -> res = VAL(x) :: else -> skip fi
#endif
}

/* read.rs Engine::l1_entry / try_l1_hit after reading L1's entry `c`: its value if its stamps
 * are current, else it is removed (l1_tags_valid). */
inline l1_take(p, k) {
#if L1_STAMPED
    if
    :: c != EMPTY ->
        current(p);
        atomic {
            if
            :: STAMP(c) == cur -> res = VAL(c)
            :: else -> if :: l1[IX(p, k)] == c -> l1[IX(p, k)] = EMPTY :: else -> skip fi
            fi
        }
    :: else -> skip
    fi
#else
    res = VAL(c)
#endif
}

/* A process learns an invalidation: ghost floors only. */
inline raise_floor(p, k, g) { floor_inv[IX(p, k)] = MAX(floor_inv[IX(p, k)], g) }

/* Engine::announce, the publishing side of bus/redis.rs: one message to every other process,
 * each of which may lose it while the loss budget lasts. */
inline publish(from, kind, k, v, g) {
    for (r : 0 .. NP - 1) {
        if
        :: r == from -> skip
        :: else ->
            sent[r]++;
            if
            :: losses > 0 ->
                losses--;
                if
                :: kind == FLUSH ->
                    for (i : 0 .. NK - 1) { lost_floor[IX(r, i)] = MAX(lost_floor[IX(r, i)], g) }
                :: else -> lost_floor[IX(r, k)] = MAX(lost_floor[IX(r, k)], g)
                fi
            :: true -> bus[r] ! kind, k, v, g, sent[r]
            fi
        fi
    }
}

/* ---- a read: Engine::load (engine/load.rs), with read_through and backfill (engine/read.rs)
 * and the fill path of Engine::write (engine/write.rs). One atomic step per await of the code
 * (store calls), or per lock it takes (L1, fence, flights). The value read ends in `res`. ---- */

/* flight.rs Flights::join: a waiter on the key's flight, or the leader of a new one. */
inline join(p, k) {
    if
    :: flight[IX(p, k)] != 0 -> f = flight[IX(p, k)]; leader = false
    :: else ->
        f = 1;
        do :: holders[f] == 0 -> break :: else -> f++ od;
        assert(f < MAXF);
        flight[IX(p, k)] = f; leader = true
    fi;
    holders[f]++
}

/* write.rs Engine::insert_l1 for a fill: Fence::write_if_allowed. */
inline fill_l1(p, k, code) {
    atomic {
        if
        :: FENCED(p, k, t) -> refused = true
        :: else -> l1[IX(p, k)] = code; refused = false
        fi
    }
}

/* A fill's compare-and-set into L2 (Store::compare_and_set), expecting what the load observed
 * (FIX_TOMBSTONE_VERSION) or an empty slot. */
inline cas_l2(k, code) {
    atomic {
#if FIX_TOMBSTONE_VERSION
        expected = seen2;
#else
        expected = EMPTY;
#endif
        if
        :: l2[k] == expected -> l2[k] = code; l2_changes[k]++; ok = true
        :: else -> ok = false
        fi;
        fill_after_delete = ok || l2_changes[k] != changes;
        assert(fill_after_delete)
    }
}

/* A fill's write into L4: compare-and-set with FIX_L4_CAS, else a plain put. */
inline write_l4(k, code) {
    atomic {
#if FIX_L4_CAS
        if
        :: l4[k] == seen4 -> l4[k] = code; ok = true
        :: else -> ok = false
        fi
#else
        l4[k] = code; ok = true
#endif
    }
}

/* Taking a fill back (write.rs Engine::take_back: superseded, or refused by the fence in L1):
 * with FIX_TAKEBACK_CONDITIONAL a compare-and-set from the fill's value to a new tombstone, so
 * nothing that replaced it meanwhile is removed and no older load can fill the slot after;
 * without, the slot is emptied (remove_quietly). A plain L4 is emptied either way. */
inline take_back_l2(k, code) {
    atomic {
#if FIX_TAKEBACK_CONDITIONAL
        if
        :: l2[k] == code -> tomb_ids++; l2[k] = TOMB(tomb_ids); l2_changes[k]++
        :: else -> skip
        fi
#else
        l2[k] = EMPTY; l2_changes[k]++
#endif
    }
}
inline take_back_l4(k, code) {
    atomic {
#if FIX_L4_CAS && FIX_TAKEBACK_CONDITIONAL
        if :: l4[k] == code -> tomb_ids++; l4[k] = TOMB(tomb_ids) :: else -> skip fi
#else
        l4[k] = EMPTY
#endif
    }
}

/* write.rs Engine::write for WriteKind::Fill under ticket t into L2, L4 (when `to_l4`) and L1,
 * the shared layers in the order of FIX_CAS_FIRST; a superseded write is taken back, and so is
 * one the fence refuses in L1. */
inline fill(p, k, code, to_l4) {
    if
    :: FENCED(p, k, t) -> skip                                     /* Fence::check */
    :: else ->
        w2 = false; w4 = false; ok = true;
#if FIX_CAS_FIRST
        cas_l2(k, code);
        w2 = ok;
        if :: ok && to_l4 -> write_l4(k, code); w4 = ok :: else -> skip fi;
#else
        if :: to_l4 -> write_l4(k, code); w4 = ok :: else -> skip fi;
        if :: ok -> cas_l2(k, code); w2 = ok :: else -> skip fi;
#endif
        if
        :: ok -> fill_l1(p, k, code)
        :: else -> refused = true
        fi;
        if :: refused && w2 -> take_back_l2(k, code) :: else -> skip fi;
        if :: refused && w4 -> take_back_l4(k, code) :: else -> skip fi
    fi
}

/* The call returns `res` (a leader first ends its flight: flight.rs Leader::finish): the
 * properties every read keeps; then the task's dead locals are forgotten. */
inline returned(p, k) {
    atomic {
        if
        :: leader ->
            if :: flight[IX(p, k)] == f -> flight[IX(p, k)] = 0 :: else -> skip fi;
            outcome[f] = res
        :: else -> skip
        fi;
        if
        :: f != 0 ->
            holders[f]--;
            if :: holders[f] == 0 -> outcome[f] = PENDING :: else -> skip fi
        :: else -> skip
        fi;
        no_resurrection = (res >= lo_inv);
        read_your_writes = (res >= lo_ryw);
        assert(no_resurrection);
        assert(read_your_writes);
        c = 0; cur = 0; gen = 0; res = 0; f = 0; t = 0; s = 0; seen2 = 0; seen4 = 0;
        changes = 0; expected = 0; lo_inv = 0; lo_ryw = 0;
        ok = false; leader = false; refused = false; w2 = false; w4 = false
    }
}

/* load.rs Engine::load (get_or_set, #[cached]): L1, else the key's flight: a waiter takes the
 * leader's value; the leader reads the layers (read_through), else takes its ticket, stamps,
 * runs the loader (reads the database) and stores a fill. (A failed load, whose waiters go
 * round again, is not modelled: the loader always answers.) */
inline get_or_set(p, k) {
    atomic {                                                        /* the call begins */
        lo_inv = floor_inv[IX(p, k)]; lo_ryw = floor_ryw[IX(p, k)];
        c = l1[IX(p, k)]; L1_NOW(l1_take(p, k))
    }
    L1_LATER(l1_take(p, k));
    atomic { if :: res == 0 -> join(p, k) :: else -> skip fi }
    if
    :: res != 0 -> skip
    :: res == 0 && !leader ->
        atomic { outcome[f] != PENDING -> res = outcome[f] }       /* Waiter::wait */
    :: res == 0 && leader -> load_as_leader(p, k)
    fi;
    returned(p, k)
}

inline load_as_leader(p, k) {
    /* read.rs Engine::read_through: L1 again, the ticket, then each layer */
    atomic { c = l1[IX(p, k)]; L1_NOW(l1_take(p, k)); L1_NOW(t = seq[p]) }
    L1_LATER(l1_take(p, k)); L1_LATER(t = seq[p]);
    if
    :: res != 0 -> skip
    :: else ->
        atomic { seen2 = l2[k]; changes = l2_changes[k]; NOW(take_if_valid(p, seen2)) }
        LATER(take_if_valid(p, seen2));
        if
        :: res != 0 -> fill_l1(p, k, seen2)                          /* back-fill L1 */
        :: else ->
            atomic { seen4 = l4[k]; NOW(take_if_valid(p, seen4)) }
            LATER(take_if_valid(p, seen4));
            if
            :: res != 0 ->                                           /* back-fill L2 and L1 */
#if FIX_BACKFILL_KEEPS_TOMBSTONE
                if
                :: IS_TOMB(seen2) -> fill_l1(p, k, seen4)             /* L2 keeps it */
                :: else -> fill(p, k, seen4, false)
                fi
#else
                fill(p, k, seen4, false)
#endif
            :: else ->                                               /* the load itself */
#if STAMPED
                t = seq[p];                                          /* the load's ticket */
                current(p);                                          /* TagIndex::stamps */
                atomic { s = cur; res = db[k] }                      /* the loader */
#else
                atomic { t = seq[p]; s = 0; res = db[k] }
#endif
                fill(p, k, VCODE(res, s), true)                      /* store_loaded */
            fi
        fi
    fi
}

#include "invalidations.pml"

/* The local variables every task uses (the inlines above name them). */
#define TASK_LOCALS \
    byte c, cur, gen, res, f, t, s, v, g, i, r, seen2, seen4, changes, expected, lo_inv, lo_ryw; \
    bool ok, leader, refused, w2, w4

proctype reader(byte p; byte k; byte times) {
    TASK_LOCALS;
    do
    :: times > 0 -> get_or_set(p, k); times--
    :: else -> break
    od
}

#include "scenarios.pml"
