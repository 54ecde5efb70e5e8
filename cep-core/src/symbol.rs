//! String interning: symbols (tickers, account ids, ...) become dense `u32` ids at ingest so that
//! events stay fixed-width and comparisons are integer compares.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Interned strings, ids assigned densely from 0 in first-seen order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SymbolTable {
    names: Vec<String>,
    #[serde(skip)]
    ids: HashMap<String, u32>,
}

impl SymbolTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a table from names in id order (as stored in a tape header). Duplicate names keep
    /// their first id for lookups.
    pub fn from_names(names: Vec<String>) -> Self {
        let mut ids = HashMap::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            ids.entry(n.clone()).or_insert(i as u32);
        }
        Self { names, ids }
    }

    /// The id of `name`, interning it if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// The id of `name` if interned.
    pub fn lookup(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The name of `id`, if assigned.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no symbol is interned.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// All names in id order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Rebuilds the lookup index after deserialisation.
    pub fn rebuild_index(&mut self) {
        let names = std::mem::take(&mut self.names);
        *self = Self::from_names(names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_dense_and_stable() {
        let mut t = SymbolTable::new();
        assert_eq!(t.intern("AAPL"), 0);
        assert_eq!(t.intern("MSFT"), 1);
        assert_eq!(t.intern("AAPL"), 0);
        assert_eq!(t.name(1), Some("MSFT"));
        assert_eq!(t.lookup("GOOG"), None);
        let t2 = SymbolTable::from_names(t.names().to_vec());
        assert_eq!(t2.lookup("MSFT"), Some(1));
    }
}
