//! Where the transaction user calls into [`crate::service::aaa`]: authorisation of joins
//! and zaps, START/STOP/EVENT accounting, PNR handling (sessions whose channel a new
//! profile no longer entitles end with a BYE), REGISTER digest, metrics. A child module of
//! `tu` (declared there with `#[path]`) so that it sees the session table; `tu.rs` holds
//! only one-line calls to these methods. Nothing here runs when `[aaa] peer` is unset.

use super::*;
use crate::diameter::driver::IncomingRequest;
use crate::service::aaa::{AaaClient, AaaSection, AaaStartError};
use crate::store::Store;

/// The session row key of a dialog (what `join` stores), the accounting session's base.
fn session_key(key: &DialogId) -> String {
    format!("{}/{}", key.call_id, key.local_tag)
}

/// The viewer's public identity: P-Asserted-Identity (RFC 3325) when present, else the
/// From URI (as an AoR).
fn viewer_identity(req: &Request) -> String {
    let pai = HeaderName::new("P-Asserted-Identity");
    if let Some(v) = req.headers.get_all(&pai).find_map(|v| {
        v.split(',')
            .find_map(|one| crate::sip::NameAddr::parse(one.trim()))
    }) {
        return sipmsg::aor(&v.uri);
    }
    req.from().map(|f| sipmsg::aor(&f.uri)).unwrap_or_default()
}

/// The key of a join's stream reservation: its INVITE (Call-ID, From tag).
fn join_key(req: &Request) -> String {
    let tag = req
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    format!("{}\n{tag}", req.call_id().unwrap_or_default())
}

/// `Reason` of the BYE that ends a revoked session (RFC 3326).
const REVOKED: &str = "SIP;cause=403;text=\"Entitlement revoked\"";

impl Service {
    /// The AAA client, when `[aaa] peer` is set.
    pub fn aaa(&self) -> Option<&AaaClient> {
        self.inner.aaa.get()
    }

    /// Connects to the AAA (`cfg.peer`; unset: nothing happens), starts the accounting
    /// sender and the loop that answers the AAA's requests (PNR).
    pub async fn enable_aaa(&self, cfg: &AaaSection, store: Store) -> Result<(), AaaStartError> {
        if cfg.peer.is_none() || self.inner.aaa.get().is_some() {
            return Ok(());
        }
        let (client, mut incoming) = AaaClient::start(cfg, store, now().1).await?;
        let _ = self.inner.aaa.set(client);
        let svc = self.clone();
        let pnr_loop = tokio::spawn(async move {
            while let Some(req) = incoming.recv().await {
                svc.on_aaa_request(req).await;
            }
        });
        if let Some(aaa) = self.aaa() {
            aaa.own_task(pnr_loop.abort_handle());
        }
        info!(peer = ?cfg.peer, policy = ?cfg.policy, "AAA client started");
        Ok(())
    }

    async fn on_aaa_request(&self, req: IncomingRequest) {
        let Some(aaa) = self.aaa() else { return };
        let (answer, changed) = aaa.on_request(&req.request, now().0);
        req.answer(answer);
        let Some((identity, profile)) = changed else {
            return;
        };
        let revoked: Vec<(DialogId, Session)> = {
            let mut st = self.state();
            let keys: Vec<DialogId> = st
                .sessions
                .iter()
                .filter(|(k, s)| {
                    matches!(s.role, Role::Viewer { .. })
                        && !aaa.entitles(&profile, s.channel())
                        && aaa
                            .identity_of(&aaa.accounting_id(&session_key(k)))
                            .as_deref()
                            == Some(identity.as_str())
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| st.sessions.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for (key, s) in revoked {
            info!(%identity, channel = %s.channel(), call_id = %key.call_id, "entitlement revoked: BYE");
            aaa.counters()
                .revoked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.finish_with(key, s, true, Some(REVOKED)).await;
        }
    }

    /// Stops the AAA client (at AS shutdown, after the sessions ended): waits a moment for
    /// the outbox to drain, then DPR and the tasks end. Records left wait for the next start.
    pub async fn stop_aaa(&self) {
        if let Some(aaa) = self.aaa() {
            aaa.stop(Duration::from_secs(1)).await;
        }
    }

    /// A join of `channel`: `Err` is the refusal (403 / 503).
    pub(super) async fn aaa_authorize_join(
        &self,
        req: &Request,
        channel: &str,
    ) -> std::result::Result<(), Reject> {
        let Some(aaa) = self.aaa() else { return Ok(()) };
        let identity = viewer_identity(req);
        aaa.authorize(&identity, channel, Some(&join_key(req)), now().0)
            .await
    }

    /// A zap of the session `key` to `to`: the package is checked (the stream count does
    /// not change).
    pub(super) async fn aaa_authorize_zap(
        &self,
        key: &DialogId,
        to: &str,
    ) -> std::result::Result<(), Reject> {
        let Some(aaa) = self.aaa() else { return Ok(()) };
        let Some(identity) = aaa.identity_of(&aaa.accounting_id(&session_key(key))) else {
            return Ok(());
        };
        aaa.authorize(&identity, to, None, now().0).await
    }

    /// An initial INVITE has been answered: a reservation its join left (it failed after
    /// the authorisation) is dropped.
    pub(super) fn aaa_invite_done(&self, req: &Request) {
        if let Some(aaa) = self.aaa() {
            aaa.release(&join_key(req));
        }
    }

    /// A join committed: ACR START.
    pub(super) async fn aaa_joined(&self, req: &Request, key: &DialogId, channel: &str) {
        let Some(aaa) = self.aaa() else { return };
        let identity = viewer_identity(req);
        aaa.start_session(
            &session_key(key),
            &join_key(req),
            (&identity, channel),
            now().1,
        )
        .await;
    }

    /// A session ends: ACR STOP with its duration (viewers whose START was queued).
    pub(super) async fn aaa_finished(&self, key: &DialogId, s: &Session) {
        let Some(aaa) = self.aaa() else { return };
        if !matches!(s.role, Role::Viewer { .. }) {
            return;
        }
        let ms = now().1;
        // In started seconds (a session of 0.2 s counts 1 s; TS 32.299 leaves the unit to
        // the operator).
        let secs = (ms - s.started_ms)
            .max(0)
            .saturating_add(999)
            .div_euclid(1000);
        aaa.stop_session(&session_key(key), s.channel(), ms, secs)
            .await;
    }

    /// A personal channel created: ACR EVENT.
    pub(super) async fn aaa_created(&self, req: &Request, channel: &str) {
        let Some(aaa) = self.aaa() else { return };
        aaa.event("create", &viewer_identity(req), channel, now().1)
            .await;
    }

    /// REGISTER digest: `Some` is the refusal (401 challenge, 403) when `register_auth`.
    pub(super) async fn aaa_register(&self, req: &Request) -> Option<Response> {
        let aaa = self.aaa()?;
        if !aaa.config().register_auth {
            return None;
        }
        let secs = u64::try_from(now().1 / 1000).unwrap_or(0);
        let auth = req.headers.get(&HeaderName::AUTHORIZATION);
        match aaa.check_register(auth, &req.body, secs).await {
            Ok(()) => None,
            Err(rej) => Some(sipmsg::reject(req, &rej, Some(&self.tag()))),
        }
    }

    /// Appends the AAA counters to the metrics text.
    pub(super) async fn aaa_metrics(&self, text: &mut String) {
        let Some(aaa) = self.aaa() else { return };
        let outbox = aaa.outbox_len().await;
        aaa.render_metrics(text, outbox);
    }
}
