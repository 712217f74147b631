//! Where every key of a policy file is ([`FieldLocations`]), so rules checked after parsing, and
//! [`Policy::place_of`](super::Policy::place_of), can point at a line and column.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Line and column of every key of a policy file, by dotted path (`objectives.rpo`,
/// `kafka.groups[1]`): lets rules checked after parsing point at a line.
#[derive(Debug, Clone, Default)]
pub(super) struct FieldLocations(BTreeMap<String, (u32, u32)>);

impl FieldLocations {
    /// Indexes `text`; empty (so errors just lack a line) if the text does not parse as YAML.
    pub(super) fn index(text: &str) -> Self {
        let mut map = BTreeMap::new();
        if let Ok(root) = serde_saphyr::from_str::<Node>(text) {
            root.index("", &mut map);
        }
        FieldLocations(map)
    }

    /// Line and column of the key of `field`.
    pub(super) fn get(&self, field: &str) -> Option<(u32, u32)> {
        self.0.get(field).copied()
    }
}

/// Any YAML value, keeping where each mapping key was.
enum Node {
    Map(Vec<(Spanned<String>, Node)>),
    Seq(Vec<Node>),
    Scalar,
}

impl Node {
    fn index(&self, prefix: &str, out: &mut BTreeMap<String, (u32, u32)>) {
        match self {
            Node::Map(entries) => {
                for (key, value) in entries {
                    let path = if prefix.is_empty() {
                        key.value.clone()
                    } else {
                        format!("{prefix}.{}", key.value)
                    };
                    let at = &key.referenced;
                    out.entry(path.clone())
                        .or_insert((to_u32(at.line()), to_u32(at.column())));
                    value.index(&path, out);
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    item.index(&format!("{prefix}[{i}]"), out);
                }
            }
            Node::Scalar => {}
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<Node>()?));
                }
                Ok(Node::Map(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// Lines and columns of a policy file (at most 1 MiB, see `load.rs`) fit in a `u32`.
pub(super) fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_index_every_key() {
        let text = "a: 1\nb:\n  c: x\n  d: [1, {e: 2}]\n";
        let locations = FieldLocations::index(text);
        assert_eq!(locations.get("a"), Some((1, 1)));
        assert_eq!(locations.get("b.c"), Some((3, 3)));
        assert_eq!(locations.get("b.d[1].e"), Some((4, 11)));
        assert_eq!(locations.get("z"), None);
        assert_eq!(FieldLocations::index("a: [").get("a"), None);
    }
}
