//! OAuth 2.0 provider presets and how each one's user-info response names the user.

use serde_json::Value as Json;

/// Endpoints and user-info mapping of an OAuth 2.0 provider.
#[derive(Debug, Clone)]
pub(crate) struct Preset {
    /// The `provider` name.
    pub(crate) name: &'static str,
    /// The authorization endpoint.
    pub(crate) authorization_url: &'static str,
    /// The token endpoint.
    pub(crate) token_url: &'static str,
    /// The user-info endpoint.
    pub(crate) userinfo_url: &'static str,
    /// Where the user's e-mail addresses are listed when the user info has none (GitHub).
    pub(crate) emails_url: Option<&'static str>,
    /// Scopes requested when the policy names none.
    pub(crate) default_scopes: &'static [&'static str],
    /// How the user info names the user.
    pub(crate) fields: &'static Fields,
    /// Whether the user-info request must carry `Client-Id` (Twitch's Helix API).
    pub(crate) client_id_header: bool,
}

/// JSON pointers into a user-info document; the first non-empty one wins.
#[derive(Debug)]
pub(crate) struct Fields {
    /// The provider's user id.
    pub(crate) id: &'static [&'static str],
    /// The e-mail address.
    pub(crate) email: &'static [&'static str],
    /// The display name.
    pub(crate) name: &'static [&'static str],
}

/// The fields of OIDC-style user info (`sub`, `email`, `name`) with common fallbacks; also used by
/// the generic provider.
pub(crate) const STANDARD: Fields = Fields {
    id: &["/sub", "/id", "/user_id"],
    email: &["/email", "/mail"],
    name: &["/name", "/preferred_username", "/login", "/username"],
};

const GITHUB: Fields = Fields {
    id: &["/id"],
    email: &["/email"],
    name: &["/name", "/login"],
};

const GITLAB: Fields = Fields {
    id: &["/id"],
    email: &["/email", "/public_email"],
    name: &["/name", "/username"],
};

const MICROSOFT: Fields = Fields {
    id: &["/id"],
    email: &["/mail", "/userPrincipalName"],
    name: &["/displayName"],
};

const AMAZON: Fields = Fields {
    id: &["/user_id"],
    email: &["/email"],
    name: &["/name"],
};

const FACEBOOK: Fields = Fields {
    id: &["/id"],
    email: &["/email"],
    name: &["/name"],
};

const TWITCH: Fields = Fields {
    id: &["/data/0/id"],
    email: &["/data/0/email"],
    name: &["/data/0/display_name", "/data/0/login"],
};

/// The presets, by `provider` name.
pub(crate) const PRESETS: &[Preset] = &[
    Preset {
        name: "google",
        authorization_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: "https://oauth2.googleapis.com/token",
        userinfo_url: "https://openidconnect.googleapis.com/v1/userinfo",
        emails_url: None,
        default_scopes: &["openid", "email", "profile"],
        fields: &STANDARD,
        client_id_header: false,
    },
    Preset {
        name: "github",
        authorization_url: "https://github.com/login/oauth/authorize",
        token_url: "https://github.com/login/oauth/access_token",
        userinfo_url: "https://api.github.com/user",
        emails_url: Some("https://api.github.com/user/emails"),
        default_scopes: &["read:user", "user:email"],
        fields: &GITHUB,
        client_id_header: false,
    },
    Preset {
        name: "microsoft",
        authorization_url: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_url: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        userinfo_url: "https://graph.microsoft.com/v1.0/me",
        emails_url: None,
        default_scopes: &["openid", "email", "profile", "User.Read"],
        fields: &MICROSOFT,
        client_id_header: false,
    },
    Preset {
        name: "gitlab",
        authorization_url: "https://gitlab.com/oauth/authorize",
        token_url: "https://gitlab.com/oauth/token",
        userinfo_url: "https://gitlab.com/api/v4/user",
        emails_url: None,
        default_scopes: &["read_user"],
        fields: &GITLAB,
        client_id_header: false,
    },
    Preset {
        name: "linkedin",
        authorization_url: "https://www.linkedin.com/oauth/v2/authorization",
        token_url: "https://www.linkedin.com/oauth/v2/accessToken",
        userinfo_url: "https://api.linkedin.com/v2/userinfo",
        emails_url: None,
        default_scopes: &["openid", "profile", "email"],
        fields: &STANDARD,
        client_id_header: false,
    },
    Preset {
        name: "twitch",
        authorization_url: "https://id.twitch.tv/oauth2/authorize",
        token_url: "https://id.twitch.tv/oauth2/token",
        userinfo_url: "https://api.twitch.tv/helix/users",
        emails_url: None,
        default_scopes: &["user:read:email"],
        fields: &TWITCH,
        client_id_header: true,
    },
    Preset {
        name: "amazon",
        authorization_url: "https://www.amazon.com/ap/oa",
        token_url: "https://api.amazon.com/auth/o2/token",
        userinfo_url: "https://api.amazon.com/user/profile",
        emails_url: None,
        default_scopes: &["profile"],
        fields: &AMAZON,
        client_id_header: false,
    },
    Preset {
        name: "facebook",
        authorization_url: "https://www.facebook.com/v19.0/dialog/oauth",
        token_url: "https://graph.facebook.com/v19.0/oauth/access_token",
        userinfo_url: "https://graph.facebook.com/me?fields=id,name,email",
        emails_url: None,
        default_scopes: &["email", "public_profile"],
        fields: &FACEBOOK,
        client_id_header: false,
    },
];

/// The preset named `name`.
pub(crate) fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The user as a provider describes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UserInfo {
    /// The provider's user id.
    pub(crate) id: String,
    /// The e-mail address (may be empty).
    pub(crate) email: String,
    /// The display name (may be empty).
    pub(crate) name: String,
}

/// The first non-empty string (or number, as text) at one of `pointers`.
fn first(doc: &Json, pointers: &[&str]) -> String {
    pointers
        .iter()
        .filter_map(|p| match doc.pointer(p)? {
            Json::String(s) if !s.is_empty() => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .next()
        .unwrap_or_default()
}

/// Reads the user from a user-info document.
pub(crate) fn read_userinfo(doc: &Json, fields: &Fields) -> UserInfo {
    UserInfo {
        id: first(doc, fields.id),
        email: first(doc, fields.email),
        name: first(doc, fields.name),
    }
}

/// The primary, verified address of a GitHub `/user/emails` list (else the first verified one).
pub(crate) fn github_primary_email(doc: &Json) -> Option<String> {
    let list = doc.as_array()?;
    let verified = |e: &&Json| e.get("verified").and_then(Json::as_bool) == Some(true);
    let addr = |e: &Json| e.get("email").and_then(Json::as_str).map(str::to_owned);
    list.iter()
        .filter(verified)
        .find(|e| e.get("primary").and_then(Json::as_bool) == Some(true))
        .or_else(|| list.iter().find(verified))
        .and_then(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_each_providers_user_info() {
        let google =
            json!({"sub": "1081", "email": "a@example.com", "name": "Ann", "email_verified": true});
        assert_eq!(
            read_userinfo(&google, preset("google").unwrap().fields),
            UserInfo {
                id: "1081".into(),
                email: "a@example.com".into(),
                name: "Ann".into()
            }
        );
        let github = json!({"id": 583231, "login": "octocat", "name": null, "email": null});
        assert_eq!(
            read_userinfo(&github, preset("github").unwrap().fields),
            UserInfo {
                id: "583231".into(),
                email: String::new(),
                name: "octocat".into()
            }
        );
        let ms = json!({"id": "87d349ed", "displayName": "Megan Bowen", "mail": null, "userPrincipalName": "MeganB@contoso.com"});
        assert_eq!(
            read_userinfo(&ms, preset("microsoft").unwrap().fields),
            UserInfo {
                id: "87d349ed".into(),
                email: "MeganB@contoso.com".into(),
                name: "Megan Bowen".into()
            }
        );
        let gitlab = json!({"id": 1, "username": "john_smith", "name": "John Smith", "email": "john@example.com"});
        assert_eq!(
            read_userinfo(&gitlab, preset("gitlab").unwrap().fields),
            UserInfo {
                id: "1".into(),
                email: "john@example.com".into(),
                name: "John Smith".into()
            }
        );
        let twitch = json!({"data": [{"id": "141981764", "login": "twitchdev", "display_name": "TwitchDev", "email": "t@example.com"}]});
        assert_eq!(
            read_userinfo(&twitch, preset("twitch").unwrap().fields).id,
            "141981764"
        );
        assert_eq!(read_userinfo(&json!([1]), &STANDARD), UserInfo::default());
    }

    #[test]
    fn picks_githubs_primary_verified_email() {
        let list = json!([
            {"email": "old@example.com", "primary": false, "verified": true},
            {"email": "unverified@example.com", "primary": true, "verified": false},
            {"email": "main@example.com", "primary": true, "verified": true},
        ]);
        assert_eq!(
            github_primary_email(&list).as_deref(),
            Some("main@example.com")
        );
        let no_primary = json!([{"email": "x@example.com", "primary": false, "verified": true}]);
        assert_eq!(
            github_primary_email(&no_primary).as_deref(),
            Some("x@example.com")
        );
        assert_eq!(
            github_primary_email(&json!([{"email": "u@example.com", "verified": false}])),
            None
        );
        assert_eq!(github_primary_email(&json!({})), None);
    }

    #[test]
    fn every_schema_provider_has_a_preset() {
        for name in [
            "amazon",
            "facebook",
            "github",
            "gitlab",
            "google",
            "linkedin",
            "microsoft",
            "twitch",
        ] {
            let p = preset(name).unwrap();
            for u in [p.authorization_url, p.token_url, p.userinfo_url] {
                assert!(u.starts_with("https://"), "{u}");
            }
        }
        assert!(preset("okta").is_none());
    }
}
