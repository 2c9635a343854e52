//! Naming the four layers and choosing among them.

use std::fmt;

/// One of the four cache layers, from fastest to most durable.
///
/// Pass it to [`Set::layer`](crate::Set::layer) or [`GetOrSet::layer`](crate::GetOrSet::layer) to
/// restrict a write to some layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// In-process memory.
    L1,
    /// A local Redis or Memcached.
    L2,
    /// A Redis Cluster.
    L3,
    /// Object storage: S3, a local directory, and the other object_store backends.
    L4,
}

impl Layer {
    /// All four, in read order.
    pub const ALL: [Layer; 4] = [Layer::L1, Layer::L2, Layer::L3, Layer::L4];

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The lower-case name used in configuration and in `#[cached(layer = "l1")]`.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::L1 => "l1",
            Layer::L2 => "l2",
            Layer::L3 => "l3",
            Layer::L4 => "l4",
        }
    }
}

/// Serialized as its [`name`](Layer::name): `"l1"` … `"l4"`.
impl serde::Serialize for Layer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of layers, as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct LayerSet(u8);

impl LayerSet {
    pub(crate) const ALL: LayerSet = LayerSet(0b1111);

    pub(crate) const fn of(layers: &[Layer]) -> LayerSet {
        let mut bits = 0u8;
        let mut i = 0;
        while i < layers.len() {
            bits |= 1 << layers[i].index();
            i += 1;
        }
        LayerSet(bits)
    }

    pub(crate) const fn contains(self, layer: Layer) -> bool {
        self.0 & (1 << layer.index()) != 0
    }

    pub(crate) fn insert(&mut self, layer: Layer) {
        self.0 |= 1 << layer.index();
    }
}
