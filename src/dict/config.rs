//! [`DictConfig`]: the capacity of a dict, fixed at creation, and the
//! geometry (slots and arena per stripe) derived from it.

use crate::segment::BODY_OFFSET;

/// Arena allocation unit in bytes; every block is a power-of-two number of
/// units and starts with a 16-byte header.
pub(crate) const UNIT: usize = 16;
/// Largest size class: blocks of 2^27 units (2 GiB).
pub(crate) const MAX_CLASS: u32 = 27;
/// Number of free-list heads per stripe (class 0 is unused).
pub(crate) const CLASSES: usize = MAX_CLASS as usize + 1;
/// Bytes of one stripe header (lock, counters, free lists).
pub(crate) const STRIPE_HEADER_SIZE: usize = 192;
/// Most stripes a dict may have.
pub const MAX_STRIPES: usize = 4096;
/// Longest key accepted (bytes).
pub const MAX_KEY_LEN: usize = 1 << 16;
/// Most entries a dict may be sized for.
pub const MAX_ENTRIES: usize = 1 << 30;

/// The capacity of a [`ShmDict`](super::ShmDict), fixed when it is created.
///
/// Most callers want [`DictConfig::for_entries`]: the number of entries
/// and the largest key and value, with the arena computed.
///
/// The table and the arena are split evenly over `stripes` independent
/// stripes (each with its own lock, table and arena). Each stripe's table
/// is sized for `max_entries / stripes` keys plus a margin of four standard
/// deviations (keys spread over stripes binomially), at a load factor of at
/// most 7/8; `arena_bytes` is the total room for keys, values and their
/// 16-byte block headers, rounded up per entry to a power of two.
///
/// ```
/// use shmkit::DictConfig;
///
/// let cfg = DictConfig::new(10_000, 4 << 20);
/// assert_eq!(cfg.stripes, 16);
/// let bytes = cfg.segment_size()?; // what `ShmDict::create` will map
/// assert!(bytes > 4 << 20);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DictConfig {
    /// How many entries the dict must hold (per-stripe tables get a 4σ
    /// margin above their share).
    pub max_entries: usize,
    /// Total arena bytes for keys and values (split evenly over stripes).
    pub arena_bytes: usize,
    /// Number of independently locked stripes (1..=4096).
    pub stripes: usize,
}

impl DictConfig {
    /// A config with 16 stripes (fewer when `max_entries` is small).
    pub fn new(max_entries: usize, arena_bytes: usize) -> Self {
        let stripes = (max_entries / 8).clamp(1, 16);
        Self {
            max_entries,
            arena_bytes,
            stripes,
        }
    }

    /// Sets the number of stripes. (Call before
    /// [`arena_for`](Self::arena_for): the arena it computes depends on
    /// the stripe count.)
    pub fn stripes(mut self, stripes: usize) -> Self {
        self.stripes = stripes;
        self
    }

    /// A dict for `max_entries` entries whose keys are at most
    /// `max_key_len` bytes and values at most `max_value_len` bytes, with
    /// the arena computed (16 stripes, fewer when `max_entries` is small;
    /// see [`arena_for`](Self::arena_for) for the guarantee).
    ///
    /// ```
    /// use shmkit::{DictConfig, ShmDict};
    ///
    /// // Room for 1000 entries: keys up to 16 bytes, values up to 100.
    /// let cfg = DictConfig::for_entries(1000, 16, 100)?;
    /// let d = ShmDict::anonymous(cfg)?;
    /// for i in 0..1000u32 {
    ///     d.insert(format!("key-{i}").as_bytes(), &vec![7; (i % 101) as usize])?;
    /// }
    /// assert_eq!(d.len(), 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_entries(
        max_entries: usize,
        max_key_len: usize,
        max_value_len: usize,
    ) -> Result<Self, crate::Error> {
        Self::new(max_entries, 0).arena_for(max_key_len, max_value_len)
    }

    /// Sets `arena_bytes` so that the arena never runs out before the
    /// table does, for keys of at most `max_key_len` bytes and values of at
    /// most `max_value_len` bytes, whatever the mix of sizes and the order
    /// of inserts, replacements and removals: as long as the entries fit
    /// the table (see the type docs), no insert fails for lack of arena.
    ///
    /// Each entry takes a block of `16 + round8(key) + value` bytes rounded
    /// up to a power of two (at most `B` bytes for the maxima); free blocks
    /// are reused by size class and never merged, so a stripe whose table
    /// holds `L` entries (plus the one being replaced) gets `2 · (L + 1) ·
    /// B` bytes: enough for `L + 1` live blocks of *every* class up to `B`.
    /// When all entries have one size, [`new`](Self::new) with
    /// `max_entries × B` bytes is tighter, with no such guarantee.
    ///
    /// ```
    /// use shmkit::DictConfig;
    ///
    /// let cfg = DictConfig::new(64, 0).stripes(2).arena_for(8, 24)?;
    /// assert_eq!(cfg.stripes, 2);
    /// assert!(cfg.arena_bytes >= 2 * 64 * 64); // 64-byte blocks, doubled
    /// assert!(DictConfig::for_entries(10, shmkit::dict::MAX_KEY_LEN + 1, 0).is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn arena_for(
        mut self,
        max_key_len: usize,
        max_value_len: usize,
    ) -> Result<Self, crate::Error> {
        use crate::Error::InvalidArgument as Bad;
        if max_key_len > MAX_KEY_LEN {
            return Err(Bad("dict max_key_len above MAX_KEY_LEN"));
        }
        let class = super::raw::units_for(max_key_len, max_value_len)
            .map(super::raw::class_for)
            .filter(|&c| c <= MAX_CLASS)
            .ok_or(Bad("dict entries too large: a block holds at most 2 GiB"))?;
        // The table's geometry does not depend on the arena: size it with
        // the smallest valid arena first.
        let probe = Self {
            arena_bytes: self.stripes.saturating_mul(2 * UNIT),
            ..self
        };
        let g = Geometry::from_config(&probe)?;
        let per_stripe_units = (g.max_load + 1)
            .checked_mul(1usize << (class + 1))
            .ok_or(Bad("dict size overflows"))?;
        self.arena_bytes = per_stripe_units
            .checked_mul(UNIT)
            .and_then(|b| b.checked_mul(self.stripes))
            .ok_or(Bad("dict size overflows"))?;
        Geometry::from_config(&self)?;
        Ok(self)
    }

    /// Bytes of the whole segment (header included) a dict of this
    /// capacity needs.
    pub fn segment_size(&self) -> Result<usize, crate::Error> {
        let g = Geometry::from_config(self)?;
        g.body_len()
            .checked_add(BODY_OFFSET)
            .ok_or(crate::Error::InvalidArgument("dict size overflows"))
    }
}

/// Everything derived from a [`DictConfig`]: the same computation runs in
/// the creator and in every attacher, and the results are also stored in
/// the header and compared on attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub stripes: usize,
    /// Table slots per stripe (power of two).
    pub slots: usize,
    /// Most full + tombstone slots per stripe (7/8 of `slots`).
    pub max_load: usize,
    /// Arena units per stripe.
    pub arena_units: usize,
}

impl Geometry {
    pub(crate) fn from_config(c: &DictConfig) -> Result<Self, crate::Error> {
        use crate::Error::InvalidArgument as Bad;
        if c.stripes == 0 || c.stripes > MAX_STRIPES {
            return Err(Bad("dict stripes must be in 1..=4096"));
        }
        if c.max_entries == 0 || c.max_entries > MAX_ENTRIES {
            return Err(Bad("dict max_entries must be in 1..=2^30"));
        }
        let per = c.max_entries.div_ceil(c.stripes);
        // Binomial spread of keys over stripes: add 4 standard deviations.
        let margin = 4 * ((per as f64).sqrt().ceil() as usize) + 2;
        let want = per + margin;
        // Load factor at most 7/8.
        let slots = (want * 8).div_ceil(7).next_power_of_two().max(8);
        let max_load = slots / 8 * 7;
        let arena_units = (c.arena_bytes / c.stripes) / UNIT;
        if arena_units < 2 {
            return Err(Bad(
                "dict arena_bytes too small: need at least 32 bytes per stripe",
            ));
        }
        if arena_units >= u32::MAX as usize {
            return Err(Bad("dict arena_bytes too large: at most 64 GiB per stripe"));
        }
        let g = Geometry {
            stripes: c.stripes,
            slots,
            max_load,
            arena_units,
        };
        g.checked_body_len().ok_or(Bad("dict size overflows"))?;
        Ok(g)
    }

    fn checked_body_len(&self) -> Option<usize> {
        let headers = self.stripes.checked_mul(STRIPE_HEADER_SIZE)?;
        let tables = self
            .stripes
            .checked_mul(2)?
            .checked_mul(self.slots)?
            .checked_mul(8)?;
        let arena = self
            .stripes
            .checked_mul(self.arena_units)?
            .checked_mul(UNIT)?;
        headers.checked_add(tables)?.checked_add(arena)
    }

    /// Body bytes: stripe headers, then two tables per stripe, then arenas.
    pub(crate) fn body_len(&self) -> usize {
        // from_config checked that this does not overflow.
        self.checked_body_len().unwrap_or(usize::MAX)
    }

    pub(crate) fn tables_offset(&self) -> usize {
        self.stripes * STRIPE_HEADER_SIZE
    }

    pub(crate) fn arena_offset(&self) -> usize {
        self.tables_offset() + self.stripes * 2 * self.slots * 8
    }

    /// Largest block (in units) a stripe can allocate.
    pub(crate) fn max_block_units(&self) -> usize {
        let cap = 1usize << MAX_CLASS;
        let a = self.arena_units.min(cap);
        // Largest power of two <= a.
        1usize << (usize::BITS - 1 - a.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_sane() {
        let g = Geometry::from_config(&DictConfig::new(1000, 1 << 20)).unwrap();
        assert_eq!(g.stripes, 16);
        assert!(g.max_load >= 1000 / 16 + 4 * 8);
        assert!(g.slots.is_power_of_two());
        assert_eq!(g.arena_units, (1 << 20) / 16 / 16);
        assert!(Geometry::from_config(&DictConfig::new(0, 1 << 20)).is_err());
        assert!(Geometry::from_config(&DictConfig::new(10, 1 << 20).stripes(0)).is_err());
        assert!(Geometry::from_config(&DictConfig::new(10, 8)).is_err());
        assert!(Geometry::from_config(&DictConfig::new(usize::MAX, usize::MAX)).is_err());
        assert_eq!(
            Geometry {
                arena_units: 100,
                ..g
            }
            .max_block_units(),
            64
        );
    }

    #[test]
    fn arena_for_covers_every_class_per_table_slot() {
        let cfg = DictConfig::for_entries(1000, 16, 100).unwrap();
        assert_eq!(cfg.stripes, 16);
        let g = Geometry::from_config(&cfg).unwrap();
        // 16 + 16 + 100 = 132 bytes: 9 units, class 4 (16 units).
        assert_eq!(g.arena_units, (g.max_load + 1) * 32);
        assert!(g.max_block_units() >= 16);
        // Out of range.
        assert!(DictConfig::for_entries(0, 1, 1).is_err());
        assert!(DictConfig::for_entries(10, MAX_KEY_LEN + 1, 1).is_err());
        assert!(DictConfig::for_entries(10, 8, usize::MAX).is_err());
        assert!(DictConfig::for_entries(10, 8, 1 << 40).is_err());
        assert!(DictConfig::for_entries(MAX_ENTRIES, 8, 1 << 26).is_err());
    }
}
