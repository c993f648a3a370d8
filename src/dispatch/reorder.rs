// SPDX-License-Identifier: MIT OR Apache-2.0
//! The reorder stage: places taken in order, filled in any order, handed out in order.

use std::collections::VecDeque;

/// A queue of places numbered from 0 in the order they are taken ([`Reorder::reserve`]). Each
/// is filled once, in any order ([`Reorder::put`]); [`Reorder::pop`] hands out the values in
/// place order, stopping at the first place not yet filled.
#[derive(Debug)]
pub struct Reorder<T> {
    /// Number of the place at the front of `places`.
    base: u64,
    places: VecDeque<Option<T>>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Reorder {
            base: 0,
            places: VecDeque::new(),
        }
    }
}

impl<T> Reorder<T> {
    /// Takes the next place; its number.
    pub fn reserve(&mut self) -> u64 {
        self.places.push_back(None);
        self.base + self.places.len() as u64 - 1
    }

    /// Takes the next place and fills it.
    pub fn push(&mut self, value: T) {
        self.places.push_back(Some(value));
    }

    /// Fills place `seq`. False (and `value` dropped) when the place was never taken, was
    /// already handed out, or is filled already.
    pub fn put(&mut self, seq: u64, value: T) -> bool {
        let Some(i) = seq.checked_sub(self.base) else {
            return false;
        };
        match self.places.get_mut(i as usize) {
            Some(p @ None) => {
                *p = Some(value);
                true
            }
            _ => false,
        }
    }

    /// The value of the front place, when it is filled.
    pub fn pop(&mut self) -> Option<T> {
        if !matches!(self.places.front(), Some(Some(_))) {
            return None;
        }
        self.base += 1;
        self.places.pop_front().flatten()
    }

    /// Places taken and not handed out.
    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Forgets every place; numbering goes on (so an old number never fills a new place).
    pub fn clear(&mut self) {
        self.base += self.places.len() as u64;
        self.places.clear();
    }
}
