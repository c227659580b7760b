//! [`Mirror`]: the balancer's map writes, passed on to the real maps and
//! kept as the model's [`View`] of them. The model then reads exactly what
//! `lbd`'s code wrote into the kernel, through the lookups the program
//! uses (`lb_common::vip`), so a difference in the verdicts is the
//! program's (or the model's), never the configuration's.

use std::{cell::RefCell, collections::HashMap, rc::Rc};

use lb_common::{
    backend::Backend,
    config::Config,
    vip::{VIP_INDEX_SLOTS, VipIndexEntry, VipKey, VipMeta},
};
use lb_user::dataplane::balancer::{BalancerError, MapState, Maps};

/// The configuration maps as written: what the program reads per packet.
#[derive(Debug, Default)]
pub struct View {
    /// `vip_ids` (generation 0: a free id).
    pub vip_ids: HashMap<u32, VipMeta>,
    /// `vip_filter`, nonzero buckets.
    pub filter: HashMap<u32, u8>,
    /// `maglev_tables`: each table's backend slot per ring slot.
    pub tables: HashMap<u32, Vec<u32>>,
    /// `backends`.
    pub backends: HashMap<u32, Backend>,
    /// `config`.
    pub config: Config,
    /// `vip_index`, both halves.
    pub vip_index: Vec<VipIndexEntry>,
}

/// A [`Maps`] that writes through to `inner` and records into a shared
/// [`View`].
pub struct Mirror<M> {
    inner: M,
    view: Rc<RefCell<View>>,
}

impl<M: Maps> Mirror<M> {
    /// Wrap `inner`; the view starts empty, as freshly created maps are.
    pub fn new(inner: M) -> (Self, Rc<RefCell<View>>) {
        let view = Rc::new(RefCell::new(View {
            vip_index: vec![VipIndexEntry::default(); 2 * VIP_INDEX_SLOTS as usize],
            ..View::default()
        }));
        (
            Self {
                inner,
                view: Rc::clone(&view),
            },
            view,
        )
    }
}

impl<M: Maps> Maps for Mirror<M> {
    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), BalancerError> {
        self.inner.set_vip(key, meta)?;
        self.view.borrow_mut().vip_ids.insert(meta.id, *meta);
        Ok(())
    }

    fn remove_vip(&mut self, key: &VipKey, id: u32) -> Result<(), BalancerError> {
        self.inner.remove_vip(key, id)?;
        self.view
            .borrow_mut()
            .vip_ids
            .insert(id, VipMeta::default());
        Ok(())
    }

    fn set_filter(&mut self, bucket: u32, bits: u8) -> Result<(), BalancerError> {
        self.inner.set_filter(bucket, bits)?;
        self.view.borrow_mut().filter.insert(bucket, bits);
        Ok(())
    }

    fn write_table(&mut self, ring: &[u16], members: &[u32]) -> Result<u32, BalancerError> {
        let slot = self.inner.write_table(ring, members)?;
        let expanded = ring.iter().map(|&m| members[usize::from(m)]).collect();
        self.view.borrow_mut().tables.insert(slot, expanded);
        Ok(slot)
    }

    fn drop_table(&mut self, slot: u32) {
        self.inner.drop_table(slot);
    }

    fn reserve_tables(&mut self, shapes: &[(u32, usize)]) {
        self.inner.reserve_tables(shapes);
    }

    fn adopt_tables(&mut self, slots: &[u32]) {
        self.inner.adopt_tables(slots);
    }

    fn tidy(&mut self) {
        self.inner.tidy();
    }

    fn read_table(&self, slot: u32) -> Option<Vec<u32>> {
        self.inner.read_table(slot)
    }

    fn table_entry(&self, slot: u32, index: u32) -> Option<u32> {
        self.inner.table_entry(slot, index)
    }

    fn read_table_members(&self, slot: u32) -> Option<(Vec<u16>, Vec<u32>)> {
        self.inner.read_table_members(slot)
    }

    fn set_backend(&mut self, index: u32, backend: &Backend) -> Result<(), BalancerError> {
        self.inner.set_backend(index, backend)?;
        self.view.borrow_mut().backends.insert(index, *backend);
        Ok(())
    }

    fn set_backends_batch(&mut self, writes: &[(u32, Backend)]) -> Result<(), BalancerError> {
        self.inner.set_backends_batch(writes)?;
        let mut view = self.view.borrow_mut();
        for (index, backend) in writes {
            view.backends.insert(*index, *backend);
        }
        Ok(())
    }

    fn reset_backend_stats(&mut self, index: u32) -> Result<(), BalancerError> {
        self.inner.reset_backend_stats(index)
    }

    fn reset_backend_stats_batch(&mut self, indices: &[u32]) -> Result<(), BalancerError> {
        self.inner.reset_backend_stats_batch(indices)
    }

    fn reset_vip_stats(&mut self, id: u32) -> Result<(), BalancerError> {
        self.inner.reset_vip_stats(id)
    }

    fn backend_capacity(&self) -> u32 {
        self.inner.backend_capacity()
    }

    fn set_config(&mut self, config: &Config) -> Result<(), BalancerError> {
        self.inner.set_config(config)?;
        self.view.borrow_mut().config = *config;
        Ok(())
    }

    fn write_vip_index(
        &mut self,
        half: u32,
        entries: &[VipIndexEntry],
    ) -> Result<(), BalancerError> {
        self.inner.write_vip_index(half, entries)?;
        let start = (half & 1) as usize * VIP_INDEX_SLOTS as usize;
        self.view.borrow_mut().vip_index[start..start + entries.len()].copy_from_slice(entries);
        Ok(())
    }

    fn read_back(&self) -> Result<MapState, BalancerError> {
        self.inner.read_back()
    }
}
