//! What the API remembers of the work it started (jobs, runs): in memory and bounded; when full,
//! the oldest finished entries go first, and unfinished ones stay however many there are.

use super::error::ApiError;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// An entry of a [`Recent`].
pub trait Entry: Clone {
    fn id(&self) -> &str;
    fn finished(&self) -> bool;
}

/// Entries by id, in the order they were added.
#[derive(Debug)]
pub struct Recent<T> {
    entries: Mutex<(HashMap<String, T>, VecDeque<String>)>,
    max: usize,
}

impl<T: Entry> Recent<T> {
    pub fn new(max: usize) -> Self {
        Recent { entries: Mutex::new((HashMap::new(), VecDeque::new())), max }
    }

    fn lock(&self) -> MutexGuard<'_, (HashMap<String, T>, VecDeque<String>)> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add(&self, entry: T) {
        let mut guard = self.lock();
        let (by_id, order) = &mut *guard;
        while order.len() >= self.max {
            let Some(at) = order.iter().position(|id| by_id.get(id).is_none_or(Entry::finished)) else { break };
            if let Some(id) = order.remove(at) {
                by_id.remove(&id);
            }
        }
        order.push_back(entry.id().to_owned());
        by_id.insert(entry.id().to_owned(), entry);
    }

    pub fn remove(&self, id: &str) {
        let mut guard = self.lock();
        guard.0.remove(id);
        guard.1.retain(|other| other != id);
    }

    /// Changes the entry `id`, if it is still remembered.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut T)) {
        if let Some(entry) = self.lock().0.get_mut(id) {
            change(entry);
        }
    }

    pub fn get(&self, id: &str) -> Option<T> {
        self.lock().0.get(id).cloned()
    }

    /// Every entry, oldest first.
    pub fn all(&self) -> Vec<T> {
        let guard = self.lock();
        guard.1.iter().filter_map(|id| guard.0.get(id).cloned()).collect()
    }

    pub fn count(&self, matching: impl Fn(&T) -> bool) -> usize {
        self.lock().0.values().filter(|entry| matching(entry)).count()
    }
}

/// A new job's or run's id: 16 hex digits.
pub fn new_id() -> Result<String, ApiError> {
    crate::seal::random_array::<8>()
        .map(hex::encode)
        .map_err(|_| ApiError::unavailable("the system's random source failed"))
}

/// Now, as the API writes times.
pub fn now() -> String {
    crate::time::rfc3339(crate::db::now_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Work(String, bool);

    impl Entry for Work {
        fn id(&self) -> &str {
            &self.0
        }
        fn finished(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn api_board_forgets_the_oldest_finished_work_first_and_never_unfinished_work() {
        let board = Recent::new(2);
        board.add(Work("a".into(), false));
        board.add(Work("b".into(), true));
        board.add(Work("c".into(), true));
        let ids = |board: &Recent<Work>| board.all().into_iter().map(|w| w.0).collect::<Vec<_>>();
        assert_eq!(ids(&board), ["a", "c"], "b, finished, went; a, running, stayed");
        board.update("c", |w| w.1 = false);
        board.add(Work("d".into(), false));
        assert_eq!(ids(&board), ["a", "c", "d"], "nothing finished to forget: over the bound");
        board.remove("c");
        assert_eq!(board.count(|w| !w.1), 2);
        assert!(board.get("c").is_none());
    }
}
