//! Access rights (the Cosmian KMS model): the owner grants and revokes rights per operation;
//! listings of grants, owned objects and obtained rights.

use super::*;

impl<S: Store> Kms<S> {
    pub(super) async fn owned_object(
        &self,
        user: &str,
        uid: &str,
    ) -> KResult<(ManagedObject, Version)> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        let (o, v) = if uid.starts_with('[') {
            match self.resolve(user, Some(uid), Right::Get).await {
                Ok(x) => x,
                Err(KmsError::Kmip(KmipError {
                    reason: ResultReason::ObjectNotFound,
                    ..
                })) => return Err(KmsError::UnknownObject),
                Err(e) => return Err(e),
            }
        } else {
            self.load(uid).await?.ok_or(KmsError::UnknownObject)?
        };
        if o.owner != user {
            // Without any right on it, the object does not exist for this user (as in
            // `resolve`): a guessed uid tells nothing.
            if o.rights_of(user) == 0 {
                return Err(KmsError::UnknownObject);
            }
            return Err(kerr(
                ResultReason::PermissionDenied,
                "only the owner of an object manages its access rights",
            ));
        }
        Ok((o, v))
    }

    pub(super) async fn edit_grants(
        &self,
        user: &str,
        uid: &str,
        grantee: &str,
        ops: &[String],
        add: bool,
    ) -> KResult<String> {
        if grantee.is_empty() {
            return Err(kerr(ResultReason::MissingData, "user_id is required"));
        }
        if ops.is_empty() {
            return Err(kerr(
                ResultReason::MissingData,
                "operation_types is required",
            ));
        }
        let mut mask = 0u32;
        for op in ops {
            let r = Right::from_name(op).ok_or(kerr(
                ResultReason::InvalidField,
                "unknown operation type in access request",
            ))?;
            mask |= r.bit();
        }
        for _ in 0..self.config.max_cas_retries {
            let (mut o, v) = self.owned_object(user, uid).await?;
            if grantee == o.owner {
                return Err(kerr(
                    ResultReason::InvalidField,
                    "the owner already holds every right",
                ));
            }
            match o.grants.iter_mut().find(|(u, _)| u == grantee) {
                Some((_, m)) if add => *m |= mask,
                Some((_, m)) => *m &= !mask,
                None if add => o.grants.push((grantee.into(), mask)),
                None => {}
            }
            o.grants.retain(|(_, m)| *m != 0);
            match self.store.update(&o.to_record(), v).await {
                Ok(_) => return Ok(o.uid),
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(KmsError::UnknownObject),
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::Store(StoreError::Conflict))
    }

    /// `POST /access/grant`: the owner `user` gives `grantee` the rights named in `ops`.
    pub async fn grant_access(
        &self,
        _env: &mut Env<'_>,
        user: &str,
        uid: &str,
        grantee: &str,
        ops: &[String],
    ) -> KResult<SuccessResponse> {
        let uid = self.edit_grants(user, uid, grantee, ops, true).await?;
        Ok(SuccessResponse {
            success: alloc::format!("Access for {grantee} successfully added to object {uid}"),
        })
    }

    /// `POST /access/revoke`: the owner `user` takes the rights named in `ops` from `grantee`.
    pub async fn revoke_access(
        &self,
        _env: &mut Env<'_>,
        user: &str,
        uid: &str,
        grantee: &str,
        ops: &[String],
    ) -> KResult<SuccessResponse> {
        let uid = self.edit_grants(user, uid, grantee, ops, false).await?;
        Ok(SuccessResponse {
            success: alloc::format!("Access for {grantee} successfully deleted from object {uid}"),
        })
    }

    /// `GET /access/list/{uid}`: who holds which rights on an object (owner only).
    pub async fn list_access(&self, user: &str, uid: &str) -> KResult<Vec<UserAccess>> {
        let (o, _) = self.owned_object(user, uid).await?;
        Ok(o.grants
            .iter()
            .map(|(u, m)| UserAccess {
                user_id: u.clone(),
                operations: crate::access::mask_names(*m),
            })
            .collect())
    }

    /// `GET /access/owned`: the objects `user` owns.
    pub async fn owned(&self, user: &str) -> KResult<Vec<OwnedObject>> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        let mut out = Vec::new();
        let mut uids = self.store.search(&[alloc::format!("owner={user}")]).await?;
        uids.sort();
        for u in uids {
            if let Some((o, _)) = self.load(&u).await? {
                if o.owner != user {
                    continue;
                }
                let mut m = serde_json::Map::new();
                m.insert("ObjectType".into(), o.object_type.name().into());
                if let Some(a) = o.attributes.cryptographic_algorithm {
                    m.insert("CryptographicAlgorithm".into(), a.name().into());
                }
                if let Some(l) = o.attributes.cryptographic_length {
                    m.insert("CryptographicLength".into(), l.into());
                }
                if let Some(k) = o.attributes.key_format_type {
                    m.insert("KeyFormatType".into(), k.name().into());
                }
                let tags: Vec<serde_json::Value> = o
                    .attributes
                    .tags
                    .iter()
                    .map(|t| serde_json::Value::from(t.as_str()))
                    .collect();
                m.insert("tags".into(), serde_json::Value::Array(tags));
                out.push(OwnedObject {
                    object_id: o.uid.clone(),
                    state: o.state.name().into(),
                    attributes: serde_json::Value::Object(m),
                    is_wrapped: false,
                });
            }
        }
        Ok(out)
    }

    /// `GET /access/obtained`: the objects other owners granted `user` rights on.
    pub async fn obtained(&self, user: &str) -> KResult<Vec<ObtainedAccess>> {
        if user.is_empty() {
            return Err(KmsError::Unauthenticated);
        }
        let mut out = Vec::new();
        let mut uids = self.store.search(&[alloc::format!("grant={user}")]).await?;
        uids.sort();
        for u in uids {
            if let Some((o, _)) = self.load(&u).await? {
                let m = o
                    .grants
                    .iter()
                    .find(|(g, _)| g == user)
                    .map_or(0, |(_, m)| *m);
                if m == 0 {
                    continue;
                }
                out.push(ObtainedAccess {
                    object_id: o.uid.clone(),
                    owner_id: o.owner.clone(),
                    state: o.state.name().into(),
                    operations: crate::access::mask_names(m),
                    is_wrapped: false,
                });
            }
        }
        Ok(out)
    }

    /// `POST /access/grant` with its JSON body; returns the JSON answer.
    pub async fn grant_access_json(
        &self,
        env: &mut Env<'_>,
        user: &str,
        body: &[u8],
    ) -> KResult<Vec<u8>> {
        let r = parse_access(body)?;
        to_json(
            &self
                .grant_access(env, user, &r.unique_identifier, &r.user_id, &r.operations())
                .await?,
        )
    }

    /// `POST /access/revoke` with its JSON body; returns the JSON answer.
    pub async fn revoke_access_json(
        &self,
        env: &mut Env<'_>,
        user: &str,
        body: &[u8],
    ) -> KResult<Vec<u8>> {
        let r = parse_access(body)?;
        to_json(
            &self
                .revoke_access(env, user, &r.unique_identifier, &r.user_id, &r.operations())
                .await?,
        )
    }
}

fn parse_access(body: &[u8]) -> KResult<crate::access::AccessRequest> {
    if body.len() > 64 * 1024 {
        return Err(KmsError::TooLarge);
    }
    serde_json::from_slice(body)
        .map_err(|_| KmsError::Malformed(crate::kmip::json::JsonError::Syntax))
}

/// Serialize an access-rights answer.
pub fn to_json<T: serde::Serialize>(v: &T) -> KResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|_| KmsError::Internal("JSON encoding failure"))
}
