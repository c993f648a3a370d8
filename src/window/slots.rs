// SPDX-License-Identifier: MIT OR Apache-2.0
//! The slots: which backend slot holds which frame, and which slot a new frame takes.

use super::{Key, Step, WindowError};

/// Which frame each backend slot holds.
#[derive(Clone, Debug)]
pub struct Slots {
    keys: Vec<Option<Key>>,
}

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots {
            keys: vec![None; n],
        }
    }

    /// Whether a slot holds frame `key`.
    pub fn contains(&self, key: &Key) -> bool {
        self.keys.iter().any(|k| k.as_ref() == Some(key))
    }

    pub fn clear(&mut self) {
        self.keys.iter_mut().for_each(|k| *k = None);
    }

    /// Makes sure the four frames of `window` are loaded, adding a `Load` step for each one
    /// that is not, and returns their slots. `future` lists the windows still to run in this
    /// batch, so a slot is taken from the frame needed last (or never). `loadable` says whether
    /// the element still holds a frame's bytes.
    pub fn assign(
        &mut self,
        window: [Key; 4],
        future: &[[Key; 4]],
        loadable: impl Fn(&Key) -> bool,
        steps: &mut Vec<Step>,
    ) -> Result<[usize; 4], WindowError> {
        let mut out = [0usize; 4];
        for (n, key) in window.iter().enumerate() {
            if let Some(s) = self.keys.iter().position(|k| k.as_ref() == Some(key)) {
                out[n] = s;
                continue;
            }
            if !loadable(key) {
                return Err(WindowError::Internal(format!(
                    "frame {key:?} is needed in a window again but was already released"
                )));
            }
            let slot = self.victim(&window, future).ok_or_else(|| {
                WindowError::Internal(format!(
                    "{} backend slots cannot hold a window of four frames",
                    self.keys.len()
                ))
            })?;
            self.keys[slot] = Some(*key);
            steps.push(Step::Load { key: *key, slot });
            out[n] = slot;
        }
        Ok(out)
    }

    fn victim(&self, window: &[Key; 4], future: &[[Key; 4]]) -> Option<usize> {
        if let Some(s) = self.keys.iter().position(Option::is_none) {
            return Some(s);
        }
        // (needed again in this batch?, then: never-needed by oldest key, else farthest use)
        let mut best: Option<(usize, Option<usize>, Key)> = None;
        for (s, key) in self.keys.iter().enumerate() {
            let Some(key) = key else { continue };
            if window.contains(key) {
                continue;
            }
            let next_use = future.iter().position(|w| w.contains(key));
            let better = match &best {
                None => true,
                Some((_, b_use, b_key)) => match (next_use, b_use) {
                    (None, Some(_)) => true,
                    (Some(_), None) => false,
                    (None, None) => key < b_key,
                    (Some(a), Some(b)) => a > *b,
                },
            };
            if better {
                best = Some((s, next_use, *key));
            }
        }
        best.map(|b| b.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victim_prefers_free_then_unused_then_farthest() {
        let k = |t| Key { run: 0, tick: t };
        let mut s = Slots::new(5);
        let mut steps = Vec::new();
        let w = [k(0), k(2), k(4), k(6)];
        let slots = s.assign(w, &[], |_| true, &mut steps).unwrap();
        assert_eq!(slots, [0, 1, 2, 3]);
        assert_eq!(steps.len(), 4);
        // k(8) takes the free slot 4.
        steps.clear();
        s.assign([k(2), k(4), k(6), k(8)], &[], |_| true, &mut steps)
            .unwrap();
        assert_eq!(steps, vec![Step::Load { key: k(8), slot: 4 }]);
        // k(10): free none; k(0) is not needed again -> its slot.
        steps.clear();
        s.assign([k(4), k(6), k(8), k(10)], &[], |_| true, &mut steps)
            .unwrap();
        assert_eq!(
            steps,
            vec![Step::Load {
                key: k(10),
                slot: 0
            }]
        );
        // k(12): outside the window are k(10) (never needed again) and k(2) (needed by the
        // next window): k(10) goes.
        steps.clear();
        let slots = s
            .assign(
                [k(4), k(6), k(8), k(12)],
                &[[k(2), k(4), k(6), k(8)]],
                |_| true,
                &mut steps,
            )
            .unwrap();
        assert_eq!(slots, [2, 3, 4, 0]);
        // k(14): outside are k(2) (needed in the second next window) and k(12) (needed next):
        // the farthest use goes.
        steps.clear();
        let slots = s
            .assign(
                [k(4), k(6), k(8), k(14)],
                &[[k(4), k(6), k(8), k(12)], [k(2), k(4), k(6), k(8)]],
                |_| true,
                &mut steps,
            )
            .unwrap();
        assert_eq!(slots, [2, 3, 4, 1]);
        // Released frame that is not loaded: an internal error, not a panic.
        assert!(
            s.assign([k(4), k(6), k(8), k(16)], &[], |_| false, &mut steps)
                .is_err()
        );
    }
}
