//! Screening an upstream's own questions (elicitations) before they reach the person.
//!
//! MCP forbids asking for secrets through form elicitation, and an upstream that does is
//! phishing: the person types a password into what looks like their own client. A form is
//! judged as a whole (its message, and each field's name, title, description and choices),
//! after folding what makes text look like other text: letters of other scripts that look like
//! Latin ones, full-width forms, zero-width and formatting characters, separators between
//! letters. A form that asks for a secret, or that speaks as Portcullis, is refused: the
//! upstream gets a decline and the person never sees it. Every free-text field that does reach
//! the person carries a fixed warning in front of the upstream's own words.

use portcullis_config::ElicitationRule;
use rmcp::model::ElicitRequestParams;

/// What the person reads in front of every free-text field of an upstream's form. It is put
/// there by Portcullis, in front of anything the upstream wrote; a form whose own text names
/// Portcullis is refused, so an upstream cannot write a second, reassuring one.
pub(crate) const FIELD_WARNING: &str = "Portcullis: this answer goes to the upstream named above. Never type a password, key, token, card number or one-time code here.";

/// Words that ask for a secret wherever they appear, letters only (separators removed).
const SECRET_STEMS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pincode",
    "secret",
    "apikey",
    "accesskey",
    "accesstoken",
    "authtoken",
    "bearertoken",
    "refreshtoken",
    "personalaccesstoken",
    "privatekey",
    "sshkey",
    "pgpkey",
    "gpgkey",
    "signingkey",
    "credential",
    "seedphrase",
    "recoveryphrase",
    "mnemonic",
    "recoverycode",
    "backupcode",
    "onetimecode",
    "onetimepassword",
    "verificationcode",
    "securitycode",
    "authenticationcode",
    "authenticatorcode",
    "digitcode",
    "smscode",
    "confirmationcode",
    "logincode",
    "signincode",
    "twofactor",
    "cardnumber",
    "creditcard",
    "debitcard",
    "cardverification",
    "socialsecurity",
    "bankaccount",
    "routingnumber",
    "cookie",
    "sessionid",
];

/// Short words that ask for a secret only as whole words (`pin`, not `spinner`).
const SECRET_WORDS: &[&str] = &[
    "pin", "otp", "totp", "hotp", "mfa", "2fa", "pat", "token", "cvv", "cvc", "cvv2", "ssn",
    "iban", "pwd", "pw",
];

/// Why an upstream's question does not reach the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It asks for a secret, in this part of the form.
    Secret(String),
    /// Its text speaks as Portcullis.
    Impersonation(String),
    /// Config lets this upstream ask no questions, or none with free text.
    Config(&'static str),
}

impl Refusal {
    /// The evidence's and the log's words.
    pub(crate) fn describe(&self, upstream: &str) -> String {
        match self {
            Refusal::Secret(part) => format!(
                "refused: upstream `{upstream}` asked for a secret ({part}) in a form, which MCP forbids"
            ),
            Refusal::Impersonation(part) => format!(
                "refused: upstream `{upstream}` wrote as portcullis ({part}) in its question"
            ),
            Refusal::Config(rule) => {
                format!("refused: config lets upstream `{upstream}` ask {rule}")
            }
        }
    }
}

/// Screens one question of `upstream` under `rule`: `Ok` is the question as the person sees it
/// (labelled, free-text fields warned), `Err` why it is refused.
pub(crate) fn screen(
    upstream: &str,
    rule: ElicitationRule,
    params: ElicitRequestParams,
) -> Result<ElicitRequestParams, Refusal> {
    if rule == ElicitationRule::None {
        return Err(Refusal::Config("no questions (`elicitation = \"none\"`)"));
    }
    let message = match &params {
        ElicitRequestParams::FormElicitationParams { message, .. }
        | ElicitRequestParams::UrlElicitationParams { message, .. } => message.clone(),
        _ => String::new(),
    };
    judge("the message", &message)?;
    let ElicitRequestParams::FormElicitationParams {
        meta,
        message,
        requested_schema,
    } = params
    else {
        return Ok(label(upstream, params));
    };
    let mut schema = serde_json::to_value(&requested_schema)
        .map_err(|_| Refusal::Secret("a form that cannot be read".to_owned()))?;
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (name, property) in properties.iter_mut() {
            let part = format!("field `{name}`");
            judge(&part, name)?;
            for key in ["title", "description"] {
                if let Some(text) = property.get(key).and_then(serde_json::Value::as_str) {
                    judge(&part, text)?;
                }
            }
            for key in ["enum", "enumNames", "oneOf", "anyOf", "items", "default"] {
                if let Some(value) = property.get(key) {
                    judge(&part, &value.to_string())?;
                }
            }
            if is_free_text(property) {
                if rule == ElicitationRule::NoFreeText {
                    return Err(Refusal::Config(
                        "no free-text fields (`elicitation = \"no_free_text\"`)",
                    ));
                }
                warn(property);
            }
        }
    }
    let requested_schema = serde_json::from_value(schema)
        .map_err(|_| Refusal::Secret("a form that cannot be read".to_owned()))?;
    Ok(label(
        upstream,
        ElicitRequestParams::FormElicitationParams {
            meta,
            message,
            requested_schema,
        },
    ))
}

/// Refuses `text` when, folded, it asks for a secret or names Portcullis.
fn judge(part: &str, text: &str) -> Result<(), Refusal> {
    // The vocabulary goes through the same folding (`m` is `rn` in a skeleton).
    let folded = |word: &str| -> String { fold(word).split_whitespace().collect() };
    let words = fold(text);
    let compact: String = words.split_whitespace().collect();
    if compact.contains(&folded("portcullis")) {
        return Err(Refusal::Impersonation(part.to_owned()));
    }
    let token = folded("token");
    let short_word = |word: &str| {
        SECRET_WORDS.iter().any(|secret| word == folded(secret)) || word.ends_with(&token)
    };
    let asks = SECRET_STEMS
        .iter()
        .any(|stem| compact.contains(&folded(stem)))
        || clauses(text).iter().any(|clause| {
            let words: Vec<&str> = clause.split_whitespace().collect();
            words.iter().enumerate().any(|(at, word)| {
                short_word(word) && !told_not_to_give(words.get(..at).unwrap_or_default())
            })
        });
    if asks {
        return Err(Refusal::Secret(part.to_owned()));
    }
    Ok(())
}

/// The clauses of `text` (split at `.`, `!`, `?`, `;`, `:` and newlines), each folded.
fn clauses(text: &str) -> Vec<String> {
    text.split(['.', '!', '?', ';', ':', '\n'])
        .map(fold)
        .collect()
}

/// Whether the words before a short secret word in its clause tell the person not to give it
/// ("do not give us your phone number, pin, or other sensitive info"): a negation followed
/// by a verb of giving. Only the short words (`pin`, `pat`, `otp`, ...) can be excused so;
/// the long ones (`password`, `private key`, ...) refuse the form wherever they appear, and
/// every free-text field that does reach the person carries Portcullis's own warning.
fn told_not_to_give(before: &[&str]) -> bool {
    const NEGATIONS: &[&str] = &["not", "never", "nor"];
    const GIVING: &[&str] = &[
        "give", "share", "enter", "type", "provide", "send", "include", "put", "tell", "paste",
    ];
    // "don't" folds to "don t".
    let negation = before.iter().enumerate().find_map(|(at, word)| {
        let dont = *word == "don" && before.get(at + 1) == Some(&"t");
        (NEGATIONS.contains(word) || dont).then_some(at)
    });
    negation.is_some_and(|at| before.iter().skip(at + 1).any(|word| GIVING.contains(word)))
}

/// Text as compared: compatibility forms decomposed (full-width letters, ligatures), accents
/// and zero-width or formatting characters dropped, lowercased, then each character replaced
/// by the prototype it is confusable with (Unicode's UTS #39 skeleton: Cyrillic `а` and Greek
/// `ο` become `a` and `o`, and `m` becomes `rn`, which is why the vocabulary is folded the same
/// way); anything but ASCII letters and digits is a space, and letters spelled out one at a
/// time with separators between them join up.
pub(crate) fn fold(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_normalization::char::is_combining_mark;
    let plain: String = text
        .nfkd()
        .filter(|c| !is_combining_mark(*c) && !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .collect();
    let folded: String = unicode_security::confusable_detection::skeleton(&plain)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    let mut joined = String::with_capacity(folded.len());
    let mut run = String::new();
    for word in folded.split_whitespace() {
        if word.chars().count() == 1 {
            run.push_str(word);
            continue;
        }
        if !run.is_empty() {
            joined.push_str(&run);
            joined.push(' ');
            run.clear();
        }
        joined.push_str(word);
        joined.push(' ');
    }
    joined.push_str(&run);
    joined
}

/// Zero-width and formatting characters, which join what they sit between.
fn is_invisible(character: char) -> bool {
    matches!(
        character,
        '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{00ad}' | '\u{034f}'
            | '\u{180e}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// A string field without a fixed set of values: whatever the person types goes upstream.
fn is_free_text(property: &serde_json::Value) -> bool {
    property.get("type").and_then(serde_json::Value::as_str) == Some("string")
        && property.get("enum").is_none()
        && property.get("oneOf").is_none()
        && property.get("anyOf").is_none()
}

/// Puts [`FIELD_WARNING`] in front of a free-text field's description.
fn warn(property: &mut serde_json::Value) {
    let own = property
        .get("description")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let text = if own.is_empty() {
        FIELD_WARNING.to_owned()
    } else {
        format!("{FIELD_WARNING} The upstream says: {own}")
    };
    if let Some(object) = property.as_object_mut() {
        object.insert("description".to_owned(), serde_json::Value::String(text));
    }
}

/// Labels an upstream's own question so the person sees who asks: it is the upstream speaking,
/// not Portcullis, and an answer to it approves nothing on Portcullis's side.
pub(crate) fn label(upstream: &str, params: ElicitRequestParams) -> ElicitRequestParams {
    let label = |message: String| format!("[upstream `{upstream}` asks] {message}");
    match params {
        ElicitRequestParams::FormElicitationParams {
            meta,
            message,
            requested_schema,
        } => ElicitRequestParams::FormElicitationParams {
            meta,
            message: label(message),
            requested_schema,
        },
        ElicitRequestParams::UrlElicitationParams {
            meta,
            message,
            url,
            elicitation_id,
        } => ElicitRequestParams::UrlElicitationParams {
            meta,
            message: label(message),
            url,
            elicitation_id,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests;
