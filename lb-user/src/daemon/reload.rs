//! Reload (SIGHUP or `lbctl reload`): re-read the file and apply only the
//! difference. A file that does not load, or a change only a restart can
//! make (`[global]`, `[dataplane]`), is refused as a whole and the running
//! configuration stays.

use tracing::info;

use super::{Daemon, load};
use crate::dataplane::loader::error_chain;
use crate::vrrp::driver;

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// lbd runs without a file.
    #[error("lbd was started without --config: nothing to reload")]
    NoFile,
    /// The new file does not load.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// `[global]` or `[dataplane]` changed.
    #[error(
        "[global], [dataplane], [sync], [bgp] and [nat] flows / snat_ports changes need a restart of lbd (systemctl restart keeps forwarding); nothing was applied"
    )]
    NeedsRestart,
    /// Services were added to an lbd without a data plane.
    #[error("services need the data plane, which this lbd does not run; restart lbd")]
    NoDataplane,
    /// The VRRP instances could not be changed. The message is the
    /// error's whole chain; it is not a source.
    #[error("{}", error_chain(.0))]
    Vrrp(driver::DriverError),
}

impl Daemon {
    /// Re-read the file and apply the difference; on any error nothing
    /// changes.
    pub(super) async fn reload(&mut self) -> Result<(), ReloadError> {
        let path = self.config_path.clone().ok_or(ReloadError::NoFile)?;
        let new = load(&path)?;
        if let Some(old) = self.config.as_ref()
            && (old.dataplane != new.dataplane
                || old.global != new.global
                || old.sync != new.sync
                || old.bgp != new.bgp
                || old.nat.flows != new.nat.flows
                || old.nat.snat_ports != new.nat.snat_ports)
        {
            return Err(ReloadError::NeedsRestart);
        }
        if !new.service.is_empty() && self.controller.is_none() {
            return Err(ReloadError::NoDataplane);
        }
        match self.vrrp.as_mut() {
            Some(v) => v.apply(&new).await.map_err(ReloadError::Vrrp)?,
            None if !new.vrrp_instance.is_empty() => {
                self.vrrp = Some(
                    driver::start(&new, Some(self.changes.clone()), self.preempt_hold.clone())
                        .await
                        .map_err(ReloadError::Vrrp)?,
                );
            }
            None => {}
        }
        if let Some(gc) = &self.nat_gc {
            gc.timeouts.send_replace(new.nat.timeouts());
        }
        // Watchers started and stopped as `backends_from` came and went;
        // the members of the sources that stay are merged in again.
        self.etcd.apply(&new);
        self.config = Some(new);
        self.apply_services();
        info!("configuration {} applied", path.display());
        Ok(())
    }
}
