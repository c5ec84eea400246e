//! The Prometheus metrics registry: every family sipedge exposes on `GET /metrics`.
//!
//! Labels are bounded by construction: enums (layer, verdict, method, code class, refusal reason,
//! lookup result) and the names of configured trunks and targets (at most
//! [`crate::config::MAX_TRUNKS`] of each). Never a DID, never a source address. When a trunk or
//! target is deleted, [`Metrics::forget_trunk`] / [`Metrics::forget_target`] drop its series.
//!
//! The data plane's hot path never touches these: it counts into fixed arrays of atomics, and
//! its sampler adds what moved into this registry once a second (looking a labelled series up
//! takes a lock). Label enums give those arrays their indexes ([`Method::index`], `COUNT`);
//! the forwarding latency is a [`LatencyHistogram`] with the same buckets as the data plane's
//! [`LatencyBuckets`].

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

mod latency;

pub use latency::{
    FORWARD_LATENCY_BOUNDS_NS, FORWARD_LATENCY_BUCKETS, LatencyBuckets, LatencyHistogram, LatencySnapshot,
};

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Smallest policy-publish bucket, in seconds (100 µs).
const POLICY_RELOAD_FIRST_BUCKET_SECS: f64 = 100e-6;
/// Policy-publish buckets (doubling: 100 µs … 3.3 s).
const POLICY_RELOAD_BUCKETS: u16 = 16;

/// Defines a label-value enum with its exposition spelling.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// How many values there are (the length of an array indexed by [`Self::index`]).
            pub const COUNT: usize = Self::ALL.len();

            /// The position of this value in [`Self::ALL`]: an index into fixed counter arrays.
            pub const fn index(self) -> usize {
                self as usize
            }

            /// The label value as exposed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}

label_enum! {
    /// Where a packet verdict was taken.
    Layer {
        /// In the kernel (XDP).
        Xdp => "xdp",
        /// In user space (the fallback filter and the proxy's first checks).
        User => "user",
    }
}

label_enum! {
    /// A packet's fate.
    Verdict {
        /// Passed on.
        Pass => "pass",
        /// Dropped: the source is blocklisted.
        Blocklist => "blocklist",
        /// Dropped: the source is in no trunk.
        UnknownSource => "unknown-source",
        /// Dropped: over the unknown-source rate.
        RateLimit => "rate-limit",
        /// Dropped: a known scanner signature.
        Scanner => "scanner",
        /// Dropped: not parseable as SIP.
        Malformed => "malformed",
        /// Dropped: a fragment (of a dropped datagram, or fragments refused by policy).
        Fragment => "fragment",
    }
}

label_enum! {
    /// A SIP method (anything else is `other`).
    Method {
        /// INVITE.
        Invite => "INVITE",
        /// ACK.
        Ack => "ACK",
        /// BYE.
        Bye => "BYE",
        /// CANCEL.
        Cancel => "CANCEL",
        /// OPTIONS.
        Options => "OPTIONS",
        /// REGISTER.
        Register => "REGISTER",
        /// PRACK.
        Prack => "PRACK",
        /// UPDATE.
        Update => "UPDATE",
        /// INFO.
        Info => "INFO",
        /// REFER.
        Refer => "REFER",
        /// MESSAGE.
        Message => "MESSAGE",
        /// SUBSCRIBE.
        Subscribe => "SUBSCRIBE",
        /// NOTIFY.
        Notify => "NOTIFY",
        /// PUBLISH.
        Publish => "PUBLISH",
        /// Any other method.
        Other => "other",
    }
}

impl Method {
    /// The method of a request-line token (case-sensitive, as RFC 3261 says).
    pub fn from_token(token: &[u8]) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|m| *m != Self::Other && m.as_str().as_bytes() == token)
            .unwrap_or(Self::Other)
    }
}

label_enum! {
    /// A response code class.
    CodeClass {
        /// 1xx.
        Provisional => "1xx",
        /// 2xx.
        Success => "2xx",
        /// 3xx.
        Redirect => "3xx",
        /// 4xx.
        ClientError => "4xx",
        /// 5xx.
        ServerError => "5xx",
        /// 6xx.
        GlobalFailure => "6xx",
    }
}

impl CodeClass {
    /// The class of a status code; `None` outside 100..=699.
    pub fn of(code: u16) -> Option<Self> {
        Some(match code {
            100..=199 => Self::Provisional,
            200..=299 => Self::Success,
            300..=399 => Self::Redirect,
            400..=499 => Self::ClientError,
            500..=599 => Self::ServerError,
            600..=699 => Self::GlobalFailure,
            _ => return None,
        })
    }
}

label_enum! {
    /// Why a new call was refused.
    RefuseReason {
        /// Over the trunk's calls per second.
        Cps => "cps",
        /// Over the trunk's concurrent calls.
        Concurrency => "concurrency",
        /// The number is not routed (404).
        UnknownDid => "unknown-did",
        /// Policy forbids it (403).
        Forbidden => "forbidden",
        /// Fraud thresholds.
        Fraud => "fraud",
        /// STIR/SHAKEN verification failed.
        Identity => "identity",
        /// No healthy target answered (408/480/503 after failover).
        NoTarget => "no-target",
    }
}

label_enum! {
    /// How a DID lookup ended.
    Lookup {
        /// Exact DID.
        Hit => "hit",
        /// Inside an explicit range.
        Range => "range",
        /// Under a prefix block.
        Prefix => "prefix",
        /// Not routed.
        Miss => "miss",
    }
}

label_enum! {
    /// Something the proxy engine did or had to refuse, beyond the requests and responses
    /// themselves: what an operator watches to see a table fill, sends fail or calls end
    /// without their BYEs.
    ProxyEvent {
        /// A request forwarded downstream (first tries, failovers, in-dialog requests, ACKs).
        ForwardedRequest => "forwarded-request",
        /// A response forwarded upstream.
        ForwardedResponse => "forwarded-response",
        /// A retransmitted request absorbed (answered from its transaction).
        RetransmissionAbsorbed => "retransmission-absorbed",
        /// A serial failover to the next target.
        Failover => "failover",
        /// A response that matched no transaction.
        StrayResponse => "stray-response",
        /// A new call refused because the transaction table was full (only the reserve for
        /// requests within calls was left).
        TransactionTableFull => "transaction-table-full",
        /// A request within a call forwarded statelessly because the transaction table was
        /// full even for those.
        ForwardedStatelessTableFull => "forwarded-stateless-table-full",
        /// A send the I/O layer refused.
        SendRefused => "send-refused",
        /// A call answered (dialog confirmed).
        CallAnswered => "call-answered",
        /// A call ended (BYE, its maximum duration or its session timer).
        CallEnded => "call-ended",
        /// A call ended because its session interval (RFC 4028) passed without a refresh.
        CallSessionExpired => "call-session-expired",
        /// A call ended by its maximum duration or its session timer whose headers allowed no
        /// BYE: neither side was told.
        CallExpiredWithoutBye => "call-expired-without-bye",
        /// A BYE the edge sent at a call's maximum duration or session expiry (first
        /// transmission).
        ByeSent => "bye-sent",
        /// A BYE of the edge's that could not be built or sent.
        ByeNotSent => "bye-not-sent",
        /// A retransmission of a BYE of the edge's (Timer E).
        ByeRetransmitted => "bye-retransmitted",
        /// A BYE of the edge's answered 2xx.
        ByeAnswered2xx => "bye-answered-2xx",
        /// A BYE of the edge's answered 481 (that side had already hung up).
        ByeAnswered481 => "bye-answered-481",
        /// A BYE of the edge's answered with another final response.
        ByeAnsweredOther => "bye-answered-other",
        /// A BYE of the edge's with no final response by Timer F.
        ByeTimedOut => "bye-timed-out",
    }
}

/// `{layer, verdict}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PacketLabels {
    /// Kernel or user space.
    pub layer: Layer,
    /// Fate.
    pub verdict: Verdict,
}

/// `{method}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MethodLabels {
    /// SIP method.
    pub method: Method,
}

/// `{method, code}` (code as its class).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResponseLabels {
    /// Method of the transaction (CSeq).
    pub method: Method,
    /// Code class.
    pub code: CodeClass,
}

/// `{trunk}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TrunkLabels {
    /// Trunk name.
    pub trunk: String,
}

/// `{trunk, reason}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusedLabels {
    /// Trunk name.
    pub trunk: String,
    /// Reason.
    pub reason: RefuseReason,
}

/// `{result}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LookupLabels {
    /// Outcome.
    pub result: Lookup,
}

/// `{event}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProxyEventLabels {
    /// What happened.
    pub event: ProxyEvent,
}

/// `{target}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TargetLabels {
    /// Target name.
    pub target: String,
}

/// One trunk's call counters, resolved once and kept by the data plane.
#[derive(Debug, Clone)]
pub struct TrunkMetrics {
    /// New calls offered.
    pub offered: Counter,
    /// New calls admitted.
    pub admitted: Counter,
    /// Calls in progress.
    pub active: Gauge,
}

/// Every metric family sipedge exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `sipedge_packets_total{layer, verdict}`: packets and datagrams by verdict.
    pub packets: Family<PacketLabels, Counter>,
    /// `sipedge_sip_requests_total{method}`: requests received.
    pub requests: Family<MethodLabels, Counter>,
    /// `sipedge_sip_responses_total{method, code}`: responses received from peers or generated
    /// by the edge (each response once: a forwarded one is counted when received).
    pub responses: Family<ResponseLabels, Counter>,
    /// `sipedge_calls_offered_total{trunk}`.
    pub calls_offered: Family<TrunkLabels, Counter>,
    /// `sipedge_calls_admitted_total{trunk}`.
    pub calls_admitted: Family<TrunkLabels, Counter>,
    /// `sipedge_calls_refused_total{trunk, reason}`.
    pub calls_refused: Family<RefusedLabels, Counter>,
    /// `sipedge_calls_active{trunk}`.
    pub calls_active: Family<TrunkLabels, Gauge>,
    /// `sipedge_did_lookups_total{result}`.
    pub did_lookups: Family<LookupLabels, Counter>,
    /// `sipedge_target_up{target}`: 1 healthy, 0 down.
    pub target_up: Family<TargetLabels, Gauge>,
    /// `sipedge_proxy_events_total{event}`: what the proxy engine did (forwards, failovers,
    /// refusals, call ends, its own BYEs).
    pub proxy_events: Family<ProxyEventLabels, Counter>,
    /// `sipedge_transactions`: entries in the transaction table.
    pub transactions: Gauge,
    /// `sipedge_dialogs`: entries in the dialog table.
    pub dialogs: Gauge,
    /// `sipedge_forward_latency_seconds`: receive → forward, per forwarded message (lock-free
    /// buckets the data plane's sampler adds into).
    pub forward_latency: LatencyHistogram,
    /// `sipedge_policy_version`: version of the snapshot in force.
    pub policy_version: Gauge,
    /// `sipedge_policy_publish_seconds`: commit → snapshot published.
    pub policy_publish: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered (and `sipedge_build_info`).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            registry: Registry::default(),
            packets: Family::default(),
            requests: Family::default(),
            responses: Family::default(),
            calls_offered: Family::default(),
            calls_admitted: Family::default(),
            calls_refused: Family::default(),
            calls_active: Family::default(),
            did_lookups: Family::default(),
            target_up: Family::default(),
            proxy_events: Family::default(),
            transactions: Gauge::default(),
            dialogs: Gauge::default(),
            forward_latency: LatencyHistogram::default(),
            policy_version: Gauge::default(),
            policy_publish: Histogram::new(exponential_buckets(
                POLICY_RELOAD_FIRST_BUCKET_SECS,
                2.0,
                POLICY_RELOAD_BUCKETS,
            )),
        };
        let r = &mut registry;
        r.register("sipedge_packets", "Packets and datagrams by layer and verdict", m.packets.clone());
        r.register("sipedge_sip_requests", "SIP requests received, by method", m.requests.clone());
        r.register(
            "sipedge_sip_responses",
            "SIP responses received or generated, by method (CSeq) and code class",
            m.responses.clone(),
        );
        r.register("sipedge_calls_offered", "New calls offered, by trunk", m.calls_offered.clone());
        r.register("sipedge_calls_admitted", "New calls admitted, by trunk", m.calls_admitted.clone());
        r.register(
            "sipedge_calls_refused",
            "New calls refused, by trunk and reason",
            m.calls_refused.clone(),
        );
        r.register("sipedge_calls_active", "Calls in progress, by trunk", m.calls_active.clone());
        r.register("sipedge_did_lookups", "DID lookups, by result", m.did_lookups.clone());
        r.register("sipedge_target_up", "Target health: 1 up, 0 down", m.target_up.clone());
        r.register(
            "sipedge_proxy_events",
            "Proxy engine events: forwards, failovers, refusals, call ends, BYEs of the edge",
            m.proxy_events.clone(),
        );
        r.register("sipedge_transactions", "Entries in the transaction table", m.transactions.clone());
        r.register("sipedge_dialogs", "Entries in the dialog table", m.dialogs.clone());
        r.register(
            "sipedge_forward_latency_seconds",
            "Receive to forward latency of forwarded messages",
            m.forward_latency.clone(),
        );
        r.register(
            "sipedge_policy_version",
            "Version of the policy snapshot in force",
            m.policy_version.clone(),
        );
        r.register(
            "sipedge_policy_publish_seconds",
            "Time from a committed change to its published snapshot",
            m.policy_publish.clone(),
        );
        r.register(
            "sipedge_build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self { registry, ..m }
    }

    /// One trunk's counters (cheap clones of the registered atomics: keep them).
    pub fn trunk(&self, trunk: &str) -> TrunkMetrics {
        let labels = TrunkLabels { trunk: trunk.to_owned() };
        TrunkMetrics {
            offered: self.calls_offered.get_or_create(&labels).clone(),
            admitted: self.calls_admitted.get_or_create(&labels).clone(),
            active: self.calls_active.get_or_create(&labels).clone(),
        }
    }

    /// A refusal counter of one trunk.
    pub fn refused(&self, trunk: &str, reason: RefuseReason) -> Counter {
        self.calls_refused.get_or_create(&RefusedLabels { trunk: trunk.to_owned(), reason }).clone()
    }

    /// A packet-verdict counter.
    pub fn packet(&self, layer: Layer, verdict: Verdict) -> Counter {
        self.packets.get_or_create(&PacketLabels { layer, verdict }).clone()
    }

    /// A proxy-event counter.
    pub fn proxy_event(&self, event: ProxyEvent) -> Counter {
        self.proxy_events.get_or_create(&ProxyEventLabels { event }).clone()
    }

    /// Drops the series of a deleted trunk.
    pub fn forget_trunk(&self, trunk: &str) {
        let labels = TrunkLabels { trunk: trunk.to_owned() };
        self.calls_offered.remove(&labels);
        self.calls_admitted.remove(&labels);
        self.calls_active.remove(&labels);
        for &reason in RefuseReason::ALL {
            self.calls_refused.remove(&RefusedLabels { trunk: trunk.to_owned(), reason });
        }
    }

    /// Drops the series of a deleted target.
    pub fn forget_target(&self, target: &str) {
        self.target_up.remove(&TargetLabels { target: target.to_owned() });
    }

    /// The text exposition (OpenMetrics), as served on `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names of the sample lines of an exposition.
    fn sample_names(exposition: &str) -> Vec<String> {
        exposition
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect()
    }

    /// A registry with one series in every family (families without series are not exposed).
    fn populated() -> Metrics {
        let m = Metrics::new();
        m.trunk("t").offered.inc();
        m.trunk("t").admitted.inc();
        m.refused("t", RefuseReason::Concurrency).inc();
        m.packet(Layer::User, Verdict::Pass).inc();
        m.requests.get_or_create(&MethodLabels { method: Method::Invite }).inc();
        m.responses.get_or_create(&ResponseLabels { method: Method::Invite, code: CodeClass::Success }).inc();
        m.did_lookups.get_or_create(&LookupLabels { result: Lookup::Hit }).inc();
        m.target_up.get_or_create(&TargetLabels { target: "pbx".into() }).set(1);
        m.proxy_event(ProxyEvent::TransactionTableFull).inc();
        m
    }

    #[test]
    fn families_and_labels_are_exposed() {
        let m = Metrics::new();
        let t = m.trunk("carrier-a");
        t.offered.inc();
        t.admitted.inc();
        t.active.set(3);
        m.refused("carrier-a", RefuseReason::Cps).inc();
        m.packet(Layer::Xdp, Verdict::Blocklist).inc_by(5);
        m.requests.get_or_create(&MethodLabels { method: Method::from_token(b"INVITE") }).inc();
        m.forward_latency.record_ns(200_000);
        m.proxy_event(ProxyEvent::ByeAnswered481).inc_by(2);
        let text = m.encode();
        for want in [
            "sipedge_calls_offered_total{trunk=\"carrier-a\"} 1",
            "sipedge_calls_active{trunk=\"carrier-a\"} 3",
            "sipedge_calls_refused_total{trunk=\"carrier-a\",reason=\"cps\"} 1",
            "sipedge_packets_total{layer=\"xdp\",verdict=\"blocklist\"} 5",
            "sipedge_sip_requests_total{method=\"INVITE\"} 1",
            "sipedge_forward_latency_seconds_count 1",
            "sipedge_proxy_events_total{event=\"bye-answered-481\"} 2",
            "sipedge_build_info{version=\"",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        m.forget_trunk("carrier-a");
        assert!(!m.encode().contains("carrier-a"));
    }

    #[test]
    fn method_and_code_class_mapping() {
        assert_eq!(Method::from_token(b"BYE"), Method::Bye);
        assert_eq!(Method::from_token(b"bye"), Method::Other);
        assert_eq!(Method::from_token(b"other"), Method::Other);
        assert_eq!(CodeClass::of(183), Some(CodeClass::Provisional));
        assert_eq!(CodeClass::of(486), Some(CodeClass::ClientError));
        assert_eq!(CodeClass::of(700), None);
    }

    #[test]
    fn dashboard_panels_use_existing_metrics() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/sipedge.json");
        let text = std::fs::read_to_string(path).expect("dashboards/sipedge.json");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
        let known = sample_names(&populated().encode());
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        let mut used = std::collections::BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?");
            let targets =
                panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title:?} has no targets"));
            assert!(!targets.is_empty(), "panel {title:?} has no queries");
            for target in targets {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
                let names = metric_names(expr);
                assert!(!names.is_empty(), "panel {title:?}: {expr:?} names no sipedge metric");
                for name in names {
                    assert!(
                        known.contains(&name),
                        "panel {title:?} uses {name}, which the registry does not expose"
                    );
                    used.insert(name);
                }
            }
        }
        assert!(used.len() >= 10, "the dashboard should cover the families, uses only {used:?}");
    }

    /// The `sipedge_*` identifiers in a PromQL expression.
    fn metric_names(expr: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = expr;
        while let Some(i) = rest.find("sipedge_") {
            let tail = &rest[i..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            names.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
        names
    }
}
