/*
 * The scenarios: three processes (caches 0, 1, 2), one writing task in cache 0, readers
 * (get_or_set) in some caches, and a bus receiver in each cache that hears another's notices.
 * Each is small enough to explore exhaustively; together they exercise every fix switch (the
 * table in docs/model.md says which scenario catches which fix left out).
 */

/* Cache 0 writes; caches 1 and 2 receive. */
inline receivers() {
    run receiver(1);
    run receiver(2)
}

#if defined(SC_SET)
/* Read-your-writes: a set (which L1 may or may not take) while two tasks of the same cache read,
 * and a reader in cache 1; warm shared layers. */
proctype writer() {
    TASK_LOCALS;
    set(0, 0)
}

init {
    atomic {
        db[0] = 1; l2[0] = VCODE(1, 0); l4[0] = VCODE(1, 0);
        run writer();
        run reader(0, 0, 2);
        run reader(0, 0, 1);
        run reader(1, 0, 1);
        receivers()
    }
}

#elif defined(SC_DELETE)
/* A delete in one process while two tasks of the same cache read (the re-fence, flights); warm
 * shared layers. */
proctype writer() {
    TASK_LOCALS;
    delete(0, 0)
}

init {
    atomic {
        db[0] = 1; l2[0] = VCODE(1, 0); l4[0] = VCODE(1, 0);
        run writer();
        run reader(0, 0, 2);
        run reader(0, 0, 1);
        receivers()
    }
}

#elif defined(SC_CROSS)
/* Across processes: two deletes in cache 0 while cache 1 loads twice; cold layers, so loads run
 * the loader and fill by compare-and-set (tombstone versions, L4's writes). */
proctype writer() {
    TASK_LOCALS;
    delete(0, 0);
    delete(0, 0)
}

init {
    atomic {
        db[0] = 1;
        run writer();
        run reader(1, 0, 2);
        receivers()
    }
}

#elif defined(SC_TAKEBACK)
/* Across processes, one delete while cache 1 loads once and cache 2 twice; cold layers (what a
 * take-back leaves). */
proctype writer() {
    TASK_LOCALS;
    delete(0, 0)
}

init {
    atomic {
        db[0] = 1;
        run writer();
        run reader(1, 0, 1);
        run reader(2, 0, 2);
        receivers()
    }
}

#elif defined(SC_GAP)
/* Lost messages: caches 1 and 2 hold both keys in L1; cache 0 deletes both; the bus may lose one
 * message; cache 1 reads key 0 and cache 2 key 1. */
proctype writer() {
    TASK_LOCALS;
    delete(0, 0);
    delete(0, 1)
}

init {
    byte p, k;
    atomic {
        for (k : 0 .. NK - 1) {
            db[k] = 1; l2[k] = VCODE(1, 0); l4[k] = VCODE(1, 0);
            for (p : 1 .. NP - 1) { l1[IX(p, k)] = VCODE(1, 0) }
        }
        run writer();
        run reader(1, 0, 1);
        run reader(2, 1, 1);
        receivers()
    }
}

#elif defined(SC_TAG)
/* Tags: the key carries one tag; cache 0 invalidates it while caches 0 and 1 read, with no
 * version memoised at the start (every read fetches it first). */
proctype writer() {
    TASK_LOCALS;
    invalidate_tag(0)
}

init {
    atomic {
        db[0] = 1; l2[0] = VCODE(1, 1); l4[0] = VCODE(1, 1);
        run writer();
        run reader(0, 0, 2);
        run reader(1, 0, 1);
        receivers()
    }
}

#elif defined(SC_TAG2)
/* Two writers: caches 0 and 1 invalidate the tag concurrently while cache 2 reads twice; every
 * cache receives the others' notices. */
proctype tag_writer(byte p) {
    TASK_LOCALS;
    invalidate_tag(p)
}

init {
    atomic {
        db[0] = 1; l2[0] = VCODE(1, 1); l4[0] = VCODE(1, 1);
        run tag_writer(0);
        run tag_writer(1);
        run reader(2, 0, 2);
        run receiver(0);
        receivers()
    }
}

#elif defined(SC_FLUSH)
/* Flush: cache 0 flushes while caches 0 (twice) and 1 load; cold layers. */
proctype writer() {
    TASK_LOCALS;
    flush(0)
}

init {
    atomic {
        db[0] = 1;
        run writer();
        run reader(0, 0, 2);
        run reader(1, 0, 1);
        receivers()
    }
}

#else
#error "choose a scenario: -DSC_<name>, one of SET DELETE CROSS TAKEBACK GAP TAG TAG2 FLUSH"
#endif
