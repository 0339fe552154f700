//! Fleet credentials: authtokens, ACL bindings, the credential store, audit records.
