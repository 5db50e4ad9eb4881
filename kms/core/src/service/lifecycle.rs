//! Lifecycle transitions (KMIP 2.1 §3.22 / §6.1): Revoke, Destroy, ReKey.

use super::*;

impl<S: Store> Kms<S> {
    pub(super) async fn revoke(
        &self,
        env: &mut Env<'_>,
        user: &str,
        uid: Option<&str>,
        reason: RevocationReasonCode,
        compromise: Option<i64>,
        right: Right,
    ) -> KResult<String> {
        let now = env.now;
        let compromised = matches!(
            reason,
            RevocationReasonCode::KeyCompromise | RevocationReasonCode::CACompromise
        );
        let apply = |o: &mut ManagedObject| -> KResult<Vec<String>> {
            let next = match (o.effective_state(now), compromised) {
                (State::PreActive | State::Active | State::Deactivated, true) => State::Compromised,
                (State::PreActive | State::Active, false) => State::Deactivated,
                (State::Deactivated | State::Compromised, _) => {
                    return Err(kerr(
                        ResultReason::WrongKeyLifecycleState,
                        "the object is already revoked",
                    ));
                }
                (State::Destroyed | State::DestroyedCompromised, _) => return Err(DESTROYED),
            };
            if next == State::Compromised {
                // §4.10 Compromise Date: when the server learnt it; §4.11 Compromise
                // Occurrence Date: when the client says it happened.
                o.attributes.compromise_date = Some(now);
                o.attributes
                    .other
                    .retain(|x| x.tag != "CompromiseOccurrenceDate");
                o.attributes.other.push(Ttlv::datetime(
                    "CompromiseOccurrenceDate",
                    compromise.unwrap_or(now),
                ));
            }
            // §4.48 Revocation Reason.
            o.attributes.other.retain(|x| x.tag != "RevocationReason");
            o.attributes.other.push(Ttlv::structure(
                "RevocationReason",
                alloc::vec![reason.to_ttlv()],
            ));
            if o.attributes.deactivation_date.is_none_or(|d| d > now) {
                o.attributes.deactivation_date = Some(now);
            }
            o.state = next;
            Ok(Vec::new())
        };
        // Only the object named: the other half of a key pair keeps its own lifecycle (KMIP
        // 2.1 §6.1.48 leaves it to the server; the OASIS AKLC-M-1/3 cases revoke and destroy
        // each half by itself and expect the other untouched).
        let (uid, _) = self.update(user, uid, right, apply, now).await?;
        Ok(uid)
    }

    pub(super) async fn destroy(
        &self,
        env: &mut Env<'_>,
        user: &str,
        uid: Option<&str>,
        right: Right,
    ) -> KResult<String> {
        let now = env.now;
        let apply = |o: &mut ManagedObject| -> KResult<Vec<String>> {
            o.state = match o.effective_state(now) {
                State::Active => {
                    return Err(kerr(
                        ResultReason::WrongKeyLifecycleState,
                        "the object is active: revoke it before destroying it",
                    ));
                }
                State::PreActive | State::Deactivated => State::Destroyed,
                State::Compromised => State::DestroyedCompromised,
                State::Destroyed | State::DestroyedCompromised => return Err(DESTROYED),
            };
            // Dropping the Zeroizing buffer wipes the key material.
            o.material = None;
            o.attributes.destroy_date = Some(now);
            Ok(Vec::new())
        };
        let (uid, _) = self.update(user, uid, right, apply, now).await?;
        Ok(uid)
    }

    pub(super) async fn rekey(
        &self,
        env: &mut Env<'_>,
        user: &str,
        uid: Option<&str>,
        attrs: &Attributes,
        right: Right,
    ) -> KResult<Response> {
        let now = env.now;
        let (old, _) = self.resolve(user, uid, right).await?;
        if old.object_type != ObjectType::SymmetricKey {
            return Err(kerr(
                ResultReason::InvalidObjectType,
                "ReKey renews symmetric keys only",
            ));
        }
        let len = old.material.as_ref().ok_or(DESTROYED)?.len();
        let new_uid = match &attrs.unique_identifier {
            Some(u) => {
                check_uid(u)?;
                u.clone()
            }
            None => new_uid(env)?,
        };
        let mut key = Zeroizing::new(alloc::vec![0u8; len]);
        env.rng
            .fill(&mut key)
            .map_err(|_| KmsError::Internal("random number generator failure"))?;
        let mut a = merge(
            &old.attributes,
            &Attributes {
                unique_identifier: None,
                ..attrs.clone()
            },
        );
        a.initial_date = Some(now);
        a.last_change_date = Some(now);
        a.activation_date = Some(now);
        a.deactivation_date = None;
        a.compromise_date = None;
        a.destroy_date = None;
        a.links.retain(|l| {
            !matches!(
                l.link_type,
                LinkType::ReplacedObjectLink | LinkType::ReplacementObjectLink
            )
        });
        a.links.push(Link {
            link_type: LinkType::ReplacedObjectLink,
            uid: old.uid.clone(),
        });
        let new = ManagedObject {
            uid: new_uid.clone(),
            object_type: ObjectType::SymmetricKey,
            state: State::Active,
            owner: old.owner.clone(),
            material: Some(key),
            grants: old.grants.clone(),
            attributes: a,
        };
        self.insert(&new).await?;
        // The old key keeps its material and state (old data stays decryptable) but hands its
        // tags and names to the new key, so `["tag"]` keeps selecting one object.
        let nu = new_uid.clone();
        self.update(
            user,
            Some(&old.uid),
            right,
            |o| {
                o.attributes.tags.retain(|t| is_system_tag(t));
                o.attributes.names.clear();
                o.attributes
                    .links
                    .retain(|l| l.link_type != LinkType::ReplacementObjectLink);
                o.attributes.links.push(Link {
                    link_type: LinkType::ReplacementObjectLink,
                    uid: nu.clone(),
                });
                Ok(())
            },
            now,
        )
        .await?;
        Ok(Response::ReKey { uid: new_uid })
    }
}
