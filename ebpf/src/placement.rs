//! Where the policy runs: in XDP when the interface and privileges allow, otherwise in user
//! space (every received datagram, before parsing), and say which.

use std::sync::Arc;

use ipnet::IpNet;

use crate::error::Error;
use crate::loader::{
    AttachMode, Attached, SIPEDGE_XDP_OBJECT, XdpFilter, detach, ensure_bpffs, is_attached, pin_dir,
};
use crate::policy::Policy;
use crate::userspace::UserspaceFilter;

/// The filter, where it ended up.
#[derive(Debug)]
pub enum Placement {
    /// In the kernel, attached to `interface`.
    Kernel {
        /// The loaded program and its maps.
        filter: Box<XdpFilter>,
        /// The interface.
        interface: String,
        /// The mode it runs in.
        attached: Attached,
    },
    /// In user space; `why` says what kept it out of the kernel.
    Userspace {
        /// The model every received datagram goes through (shared by the workers and whoever
        /// keeps its lists in sync).
        filter: Arc<UserspaceFilter>,
        /// The reason, for the start-up log.
        why: String,
    },
}

/// Loads, configures and attaches the filter to `interface` (reusing pins a previous run left,
/// so state survives restarts). Blocklist entries that expired while nobody swept are removed.
pub fn attach_interface(
    interface: &str,
    mode: AttachMode,
    policy: &Policy,
    allow: &[(IpNet, u32)],
) -> Result<(XdpFilter, Attached), Error> {
    policy.validate()?;
    ensure_bpffs()?;
    let pins = pin_dir(interface)?;
    let fresh = !is_attached(interface)?;
    let result = (|| {
        let mut filter = XdpFilter::load(SIPEDGE_XDP_OBJECT, Some(&pins))?;
        let maps = filter.maps()?;
        maps.apply_policy(policy)?;
        maps.sync_allow_list(allow)?;
        maps.sweep_expired(crate::monotonic_ns())?;
        let attached = filter.attach(interface, mode)?;
        Ok((filter, attached))
    })();
    if result.is_err() && fresh && pins.exists() {
        // Leave no orphaned pins behind a failed first attach.
        let _ = detach(interface);
    }
    result
}

/// Runs the filter in XDP on `interface` if possible, else in user space; logs which.
pub fn place(
    interface: Option<&str>,
    mode: AttachMode,
    policy: &Policy,
    allow: &[(IpNet, u32)],
) -> Result<Placement, Error> {
    policy.validate()?;
    let why = match interface {
        None => "no [xdp] interface configured".to_owned(),
        Some(ifname) => match attach_interface(ifname, mode, policy, allow) {
            Ok((filter, attached)) => {
                tracing::info!(interface = ifname, mode = %attached, "XDP filter attached");
                return Ok(Placement::Kernel {
                    filter: Box::new(filter),
                    interface: ifname.to_owned(),
                    attached,
                });
            }
            Err(e) => error_chain(&e),
        },
    };
    tracing::warn!(%why, "XDP filter unavailable: the same policy runs in user space on every received datagram");
    let filter = UserspaceFilter::new(policy.clone())?;
    filter.set_allow_list(allow)?;
    Ok(Placement::Userspace { filter: Arc::new(filter), why })
}

/// `e: cause: cause…` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_interface_the_policy_runs_in_user_space() {
        let p = place(None, AttachMode::Native, &Policy::default(), &[]).unwrap();
        assert!(matches!(p, Placement::Userspace { ref why, .. } if why.contains("no [xdp] interface")));
    }

    #[test]
    fn an_unusable_interface_falls_back_to_user_space_and_leaves_no_pins() {
        const IFNAME: &str = "sxnosuchif0";
        let p = place(Some(IFNAME), AttachMode::Native, &Policy::default(), &[]).unwrap();
        let Placement::Userspace { why, .. } = p else { panic!("attached to a missing interface") };
        assert!(!why.is_empty());
        assert!(!pin_dir(IFNAME).unwrap().exists(), "pins removed after the failed attach");
    }
}
