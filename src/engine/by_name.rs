//! The rules' lookups of interfaces and networks by name.
//!
//! A sorted list searched by bisection: a VM has a handful of NICs (at most
//! [`super::limits::MAX_DEVICES`]), and sorting them costs less than hashing them, in one
//! allocation where a hash map took one for each time it grew.

/// Items by name.
pub(super) struct ByName<'v, T>(Vec<(&'v str, T)>);

impl<'v, T: Copy> ByName<'v, T> {
    pub fn new(items: impl IntoIterator<Item = (&'v str, T)>) -> Self {
        let mut items: Vec<_> = items.into_iter().collect();
        // Stable: items of one name stay in the order given.
        items.sort_by(|a, b| a.0.cmp(b.0));
        Self(items)
    }

    /// The items named `name`, in the order given.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = T> + 's {
        let first = self.0.partition_point(|(n, _)| *n < name);
        self.0[first..]
            .iter()
            .take_while(move |(n, _)| *n == name)
            .map(|(_, item)| *item)
    }

    /// The last item named `name`, as a map filled in the order given would hold it.
    pub fn get(&self, name: &str) -> Option<T> {
        self.all(name).last()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.all(name).next().is_some()
    }

    /// The names given more than once, each once, in order of name.
    pub fn repeated(&self) -> impl Iterator<Item = &'v str> + '_ {
        let items = &self.0;
        (1..items.len())
            .filter(move |&k| {
                items[k].0 == items[k - 1].0 && (k < 2 || items[k - 2].0 != items[k].0)
            })
            .map(move |k| items[k].0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Answers as a map of lists filled in order would (names from a small alphabet, so
        /// that they repeat).
        #[test]
        fn answers_as_a_map_of_lists(names in proptest::collection::vec("[ab]{0,2}", 0..12), probe in "[ab]{0,2}") {
            let index = ByName::new(names.iter().map(String::as_str).zip(0..));
            let mut map: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, n) in names.iter().enumerate() {
                map.entry(n).or_default().push(i);
            }
            let expected = map.get(probe.as_str()).cloned().unwrap_or_default();
            prop_assert_eq!(index.all(&probe).collect::<Vec<_>>(), expected.clone());
            prop_assert_eq!(index.get(&probe), expected.last().copied());
            prop_assert_eq!(index.contains(&probe), !expected.is_empty());
            let mut seen = std::collections::HashSet::new();
            let repeated: std::collections::BTreeSet<&str> =
                names.iter().map(String::as_str).filter(|n| !seen.insert(*n)).collect();
            prop_assert_eq!(index.repeated().collect::<Vec<_>>(), repeated.into_iter().collect::<Vec<_>>());
        }
    }
}
