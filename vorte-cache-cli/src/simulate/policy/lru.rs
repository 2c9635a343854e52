//! `lru`: exact least-recently-used, O(1) a request: a hash map from key to a slot of a fixed
//! arena threaded as a doubly linked list, most recent at the head.

use std::collections::HashMap;

use super::Policy;

/// No slot: the end of the list.
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    key: u64,
    prev: u32,
    next: u32,
}

/// Exact LRU holding at most `capacity` keys.
#[derive(Debug)]
pub(crate) struct Lru {
    capacity: usize,
    slots: HashMap<u64, u32>,
    nodes: Vec<Node>,
    /// Slots freed by `remove`, reused before the arena grows.
    free: Vec<u32>,
    head: u32,
    tail: u32,
}

impl Lru {
    /// An empty LRU of `capacity` keys (at least one, at most `u32::MAX - 1`).
    pub(crate) fn new(capacity: usize) -> Lru {
        let capacity = capacity.clamp(1, (NIL - 1) as usize);
        Lru {
            capacity,
            slots: HashMap::with_capacity(capacity.min(1 << 24)),
            nodes: Vec::with_capacity(capacity.min(1 << 24)),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, slot: u32) {
        let Node { prev, next, .. } = self.nodes[slot as usize];
        match prev {
            NIL => self.head = next,
            prev => self.nodes[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.nodes[next as usize].prev = prev,
        }
    }

    fn push_front(&mut self, slot: u32) {
        self.nodes[slot as usize].prev = NIL;
        self.nodes[slot as usize].next = self.head;
        match self.head {
            NIL => self.tail = slot,
            head => self.nodes[head as usize].prev = slot,
        }
        self.head = slot;
    }

    /// Keys held, most recent first.
    #[cfg(test)]
    fn keys(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let mut slot = self.head;
        while slot != NIL {
            out.push(self.nodes[slot as usize].key);
            slot = self.nodes[slot as usize].next;
        }
        out
    }
}

impl Policy for Lru {
    fn get(&mut self, key: u64) -> bool {
        let Some(&slot) = self.slots.get(&key) else {
            return false;
        };
        if slot != self.head {
            self.unlink(slot);
            self.push_front(slot);
        }
        true
    }

    fn insert(&mut self, key: u64) {
        if self.get(key) {
            return;
        }
        let slot = if self.slots.len() >= self.capacity {
            // Full: the least recent key's slot takes the new key.
            let victim = self.tail;
            self.unlink(victim);
            self.slots.remove(&self.nodes[victim as usize].key);
            self.nodes[victim as usize].key = key;
            victim
        } else if let Some(slot) = self.free.pop() {
            self.nodes[slot as usize].key = key;
            slot
        } else {
            self.nodes.push(Node {
                key,
                prev: NIL,
                next: NIL,
            });
            (self.nodes.len() - 1) as u32
        };
        self.slots.insert(key, slot);
        self.push_front(slot);
    }

    fn remove(&mut self, key: u64) {
        if let Some(slot) = self.slots.remove(&key) {
            self.unlink(slot);
            self.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_key() {
        let mut lru = Lru::new(3);
        for key in [1, 2, 3] {
            lru.insert(key);
        }
        assert!(lru.get(1)); // order now 1, 3, 2
        lru.insert(4); // evicts 2
        assert_eq!(lru.keys(), vec![4, 1, 3]);
        assert!(!lru.get(2));
        lru.remove(1);
        assert_eq!(lru.keys(), vec![4, 3]);
        lru.insert(5);
        lru.insert(6); // full again at 3: evicts 3
        assert_eq!(lru.keys(), vec![6, 5, 4]);
    }
}
