/*
 * The invalidation protocol of vorte-cache, part 2: the invalidations (set, delete,
 * invalidate_tag, flush) and the bus's receiving side. Included by coherence.pml, which declares
 * the state they change and the read path; docs/model.md maps each part to the code.
 */

/* ---- invalidations: engine/invalidate.rs and engine/write.rs -------------------------------- */

/* invalidate.rs Engine::delete_many for one key, after the application changed the data. */
inline delete(p, k) {
    atomic {
        db[k]++; g = db[k];                                       /* the application's write */
        fence_record(p, k); forget_flight(p, k); l1[IX(p, k)] = EMPTY
    }
    atomic {                                                      /* Store::tombstone on L2 */
#if FIX_TOMBSTONE_VERSION && FIX_TOMBSTONE_ID
        tomb_ids++;
#else
        tomb_ids = 1;
#endif
        l2[k] = TOMB(tomb_ids); l2_changes[k]++
    }
#if FIX_L4_CAS
    l4[k] = TOMB(tomb_ids);                                       /* a tombstone object */
#else
    l4[k] = EMPTY;                                                /* a plain delete */
#endif
#if FIX_REFENCE
    atomic {                                                      /* the re-fence */
        fence_record(p, k); l1[IX(p, k)] = EMPTY;
#if FIX_REFENCE_DETACHES
        forget_flight(p, k)
#endif
    }
#endif
    atomic { publish(p, KEYS, k, 0, g); raise_floor(p, k, g) }     /* announce; returns */
}

/* write.rs Engine::set + Engine::write for WriteKind::Set (no tag, all layers). */
inline set(p, k) {
    atomic { db[k]++; g = db[k]; fence_record(p, k) }              /* record_set */
#if STAMPED
    current(p); s = cur;                                           /* TagIndex::stamps */
#else
    s = 0;
#endif
    atomic { l2[k] = VCODE(g, s); l2_changes[k]++ }                /* put L2 */
    l4[k] = VCODE(g, s);                                           /* put L4 */
    atomic {                                                       /* insert_l1 */
#if FIX_SET_REFENCE
        fence_record(p, k);
#endif
#if FIX_SET_DETACHES
        forget_flight(p, k);
#endif
        if
        :: l1[IX(p, k)] = VCODE(g, s)
        :: l1[IX(p, k)] = EMPTY        /* too large for L1: its older value goes (finding 3) */
        fi
    }
    atomic {
        publish(p, KEYS, k, 0, g);                                 /* a notice: for the others */
        floor_ryw[IX(p, k)] = g                                     /* an invalidation */
    }
}

/* invalidate.rs Engine::forget_tagged_loads (every key carries the tag): the flights detached,
 * their keys fenced. */
inline forget_tagged_loads(p) {
    for (i : 0 .. NK - 1) {
        if :: flight[IX(p, i)] != 0 -> forget_flight(p, i); fence_record(p, i) :: else -> skip fi
    }
}

/* invalidate.rs Engine::invalidate_tag (every key of the scenario carries the tag), after the
 * application changed the data: a new version in the authority, memoised; the flights of the
 * tag detached and their keys fenced (forget_tagged_loads); a Tag notice. */
inline invalidate_tag(p) {
    atomic { for (i : 0 .. NK - 1) { db[i]++ }; g = db[0] }
    atomic { versions++; authority = versions; v = versions }      /* TagIndex::write_record */
    atomic {
        memo_set(p, v);
        forget_tagged_loads(p)
    }
    atomic { publish(p, TAG, 0, v, g); for (i : 0 .. NK - 1) { raise_floor(p, i, g) } }
}

/* invalidate.rs Engine::flush, after the application changed the data. With FIX_FLUSH_EPOCH the
 * flush is an epoch checked like a tag (every entry is stamped with it); without, the layers are
 * cleared and nothing stops a load that began before. */
inline flush(p) {
    atomic { for (i : 0 .. NK - 1) { db[i]++ }; g = db[0] }
    atomic {
        fence_record_all(p);
        for (i : 0 .. NK - 1) { flight[IX(p, i)] = 0; l1[IX(p, i)] = EMPTY }
    }
#if FIX_FLUSH_EPOCH
    atomic { versions++; authority = versions; v = versions }      /* the epoch record */
    memo_set(p, v);
#else
    for (i : 0 .. NK - 1) { atomic { l2[i] = EMPTY; l2_changes[i]++ } }   /* Store::clear */
    for (i : 0 .. NK - 1) { l4[i] = EMPTY }
    memo_forget(p);
#endif
#if FIX_REFENCE
    atomic { fence_record_all(p); for (i : 0 .. NK - 1) { l1[IX(p, i)] = EMPTY } }
#endif
    atomic { publish(p, FLUSH, 0, v, g); for (i : 0 .. NK - 1) { raise_floor(p, i, g) } }
}

/* ---- the receiving side: bus/redis.rs Receiver::receive, invalidate.rs apply_notice and
 * forget_local_state (NoticeSink::apply, NoticeSink::drop_local_state) ----------------------- */

/* forget_local_state: L1, fence, flights and memoised versions. */
inline drop_local_state(r) {
    fence_record_all(r);
    for (i : 0 .. NK - 1) { flight[IX(r, i)] = 0; l1[IX(r, i)] = EMPTY };
    memo_forget(r)
}

/* The receiver has moved past lost messages: it is held to what they carried (ghost), and
 * with FIX_GAP_DROPS_L1 drops its local state first. */
inline passed_gap(r) {
#if FIX_GAP_DROPS_L1
    drop_local_state(r);
#endif
    gap_drops_l1 = true;
    for (i : 0 .. NK - 1) {
        raise_floor(r, i, lost_floor[IX(r, i)]);
        gap_drops_l1 = gap_drops_l1 && l1[IX(r, i)] == EMPTY
    }
}

proctype receiver(byte r) {
    byte kind, key, ver, g, n, i;
end:
    do
    :: atomic {
        bus[r] ? kind, key, ver, g, n ->
        if :: n != seen[r] + 1 -> passed_gap(r) :: else -> skip fi;
        seen[r] = n;
        if
        :: kind == KEYS ->
            fence_record(r, key); forget_flight(r, key); l1[IX(r, key)] = EMPTY;
            raise_floor(r, key, g)
        :: kind == TAG ->
#if FIX_TAG_NOTICE_REFETCH
            memo_forget(r);                /* the version is fetched again from the record */
#else
            memo_set(r, ver);              /* TagIndex::learn */
#endif
            forget_tagged_loads(r);
            for (i : 0 .. NK - 1) { raise_floor(r, i, g) }
        :: kind == FLUSH ->
            drop_local_state(r);
            for (i : 0 .. NK - 1) { raise_floor(r, i, g) }
        fi
        kind = 0; key = 0; ver = 0; g = 0; n = 0
       }
       assert(gap_drops_l1)
    :: atomic {                    /* the stream check (XINFO) finds messages it never got */
        empty(bus[r]) && seen[r] < sent[r] -> passed_gap(r); seen[r] = sent[r]
       }
       assert(gap_drops_l1)
    od
}
