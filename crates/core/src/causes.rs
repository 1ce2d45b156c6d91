//! An error as people read it: its own message followed by its causes'.

/// `error`'s message and each cause's after it, `: `-separated; a cause whose text the message
/// so far already holds is not repeated (wrappers often print their cause themselves). A
/// transport's own message ("client error (Connect)", "error performing TLS handshake") says
/// little; the cause says why (the certificate's issuer unknown, the connection refused).
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::with_causes;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|layer| layer as _)
        }
    }

    #[test]
    fn each_cause_is_said_once_after_the_message() {
        let error = Layer(
            "client error (Connect)",
            Some(Box::new(Layer(
                "tls",
                Some(Box::new(Layer("UnknownIssuer", None))),
            ))),
        );
        assert_eq!(
            with_causes(&error),
            "client error (Connect): tls: UnknownIssuer"
        );
        let repeating = Layer("handshake: refused", Some(Box::new(Layer("refused", None))));
        assert_eq!(with_causes(&repeating), "handshake: refused");
    }
}
