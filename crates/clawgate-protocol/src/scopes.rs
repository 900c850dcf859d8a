//! Operator scopes and how they imply each other (contract §4.2).

/// Read-only operator access.
pub const READ: &str = "operator.read";
/// Mutating operator access (implies read and talk).
pub const WRITE: &str = "operator.write";
/// Everything.
pub const ADMIN: &str = "operator.admin";
/// Approvals.
pub const APPROVALS: &str = "operator.approvals";
/// Questions.
pub const QUESTIONS: &str = "operator.questions";
/// Device and node pairing.
pub const PAIRING: &str = "operator.pairing";
/// Talk mode.
pub const TALK: &str = "operator.talk";
/// Talk secrets.
pub const TALK_SECRETS: &str = "operator.talk.secrets";
/// Internal session-bound read.
pub const SESSIONS_READ: &str = "operator.sessions.read";
/// Internal session-bound write.
pub const SESSIONS_WRITE: &str = "operator.sessions.write";

/// A ComfyUI worker that joined with a worker token (`clawgate worker`): it may call the
/// `comfy.worker.*` methods and nothing else. Granted by the gateway to a worker token, never on
/// request (it is not in [`ALL`]), and no operator scope satisfies it.
pub const WORKER: &str = "comfy.worker";

/// The closed public set of scopes a client may request.
pub const ALL: &[&str] =
    &[READ, WRITE, ADMIN, APPROVALS, QUESTIONS, PAIRING, TALK, TALK_SECRETS, SESSIONS_READ, SESSIONS_WRITE];

/// The scopes the local `openclaw` CLI asks for by default (`CLI_DEFAULT_OPERATOR_SCOPES`).
pub const CLI_DEFAULT: &[&str] = &[ADMIN, READ, WRITE, APPROVALS, QUESTIONS, PAIRING, TALK_SECRETS];

/// Whether `granted` satisfies `required`.
pub fn satisfied<S: AsRef<str>>(required: &str, granted: &[S]) -> bool {
    if required == WORKER {
        return granted.iter().any(|g| g.as_ref() == WORKER);
    }
    if !required.starts_with("operator.") {
        return false;
    }
    let has = |s: &str| granted.iter().any(|g| g.as_ref() == s);
    if has(required) || has(ADMIN) {
        return true;
    }
    if matches!(required, READ | TALK | SESSIONS_READ | SESSIONS_WRITE) && has(WRITE) {
        return true;
    }
    required == SESSIONS_READ && (has(READ) || has(SESSIONS_WRITE))
}

/// Whether every scope in `requested` is covered by `approved` (used for pairing upgrades and
/// device tokens).
pub fn all_covered<A: AsRef<str>, B: AsRef<str>>(requested: &[A], approved: &[B]) -> bool {
    requested.iter().all(|r| satisfied(r.as_ref(), approved))
}

/// Whether `scope` is one that exists ([`ALL`]).
pub fn is_known(scope: &str) -> bool {
    ALL.contains(&scope)
}

/// The requested scopes that exist, in request order and without repeats. A scope that does not
/// exist is never granted (issue 10, defect 15: `operator.superuser` used to be echoed back as
/// granted); dropping it matches "do not grant" without failing clients that ask for scopes a
/// newer gateway knows.
pub fn known_only<S: AsRef<str>>(requested: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(requested.len().min(ALL.len()));
    for s in requested.iter().map(AsRef::as_ref) {
        if is_known(s) && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    out
}

/// The one rule for every path that grants or widens scopes (pairing approval, token rotation,
/// any later grant): a granter may hand out only scopes its own grant satisfies (`operator.admin`
/// satisfies all). Returns the first requested scope the granter does not hold.
pub fn first_not_grantable<'a, R: AsRef<str>, G: AsRef<str>>(requested: &'a [R], granter: &[G]) -> Option<&'a str> {
    requested.iter().map(AsRef::as_ref).find(|r| !satisfied(r, granter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scopes_are_dropped_and_grants_need_the_granters_scopes() {
        assert_eq!(known_only(&["operator.superuser", READ, READ, "x"]), vec![READ.to_owned()]);
        assert_eq!(first_not_grantable(&[ADMIN], &[PAIRING]), Some(ADMIN));
        assert_eq!(first_not_grantable(&[READ, PAIRING], &[PAIRING, WRITE]), None);
        assert_eq!(first_not_grantable(&[APPROVALS, TALK_SECRETS], &[ADMIN]), None);
        assert_eq!(first_not_grantable(&[WRITE], &[READ]), Some(WRITE));
    }

    #[test]
    fn admin_satisfies_everything_and_write_implies_read() {
        assert!(satisfied(PAIRING, &[ADMIN]));
        assert!(satisfied(READ, &[WRITE]));
        assert!(satisfied(TALK, &[WRITE]));
        assert!(!satisfied(PAIRING, &[WRITE]));
        assert!(!satisfied(READ, &[] as &[&str]));
        assert!(satisfied(SESSIONS_READ, &[READ]));
        assert!(!satisfied("node", &[ADMIN]));
        assert!(satisfied(WORKER, &[WORKER]));
        assert!(!satisfied(WORKER, &[ADMIN]), "an operator is not a worker");
        assert!(!satisfied(READ, &[WORKER]), "a worker is not an operator");
        assert!(!is_known(WORKER), "never granted on request");
    }

    #[test]
    fn coverage_checks_every_requested_scope() {
        assert!(all_covered(&[READ, WRITE], &[WRITE]));
        assert!(!all_covered(&[READ, PAIRING], &[WRITE]));
    }
}
