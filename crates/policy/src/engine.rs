//! Compiling the schema and policies, and evaluating one request to a [`Decision`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityUid, PolicyId,
    PolicySet, RestrictedExpression, Schema, ValidationMode, Validator,
};

/// The annotation that turns a permit into "allowed with the person's approval".
const APPROVAL: &str = "approval";
/// The annotation that names a policy in decisions and explanations.
const ID: &str = "id";

/// Why policies cannot be loaded; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: the schema does not parse: {message}")]
    Schema { file: String, message: String },
    #[error("{file}: the policies do not parse: {message}")]
    Parse { file: String, message: String },
    #[error("the policies do not validate against the schema:\n{0}")]
    Invalid(String),
}

/// What the principal wants to do with the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ListTool,
    CallTool,
}

impl Action {
    fn cedar_name(self) -> &'static str {
        match self {
            Action::ListTool => "list_tool",
            Action::CallTool => "call_tool",
        }
    }
}

/// One question for the policies, built from the identity envelope and the resolved tool.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub groups: &'a [String],
    pub tenant: Option<&'a str>,
    pub scopes: &'a BTreeSet<String>,
    pub action: Action,
    pub upstream: &'a str,
    pub surface: &'a str,
    pub tool: &'a str,
    pub effect: &'a str,
    pub required_scopes: &'a BTreeSet<String>,
}

/// What the policies decided, and which policies decided it (by `@id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        policies: Vec<String>,
    },
    ApprovalRequired {
        policies: Vec<String>,
    },
    Deny {
        policies: Vec<String>,
        errors: Vec<String>,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow { policies } => write!(f, "allow ({})", policies.join(", ")),
            Decision::ApprovalRequired { policies } => {
                write!(f, "allow with approval ({})", policies.join(", "))
            }
            Decision::Deny { policies, errors } if policies.is_empty() && errors.is_empty() => {
                f.write_str("deny (no policy permits this)")
            }
            Decision::Deny { policies, errors } => {
                write!(f, "deny ({})", policies.join(", "))?;
                for error in errors {
                    write!(f, "; evaluation error: {error}")?;
                }
                Ok(())
            }
        }
    }
}

/// Compiled, validated policies and the schema they were validated against.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    authorizer: Authorizer,
}

impl PolicyEngine {
    /// Parses the schema and every policy file, and validates them together (strict mode).
    pub fn load(
        schema_file: &str,
        schema_text: &str,
        policy_files: &[(String, String)],
    ) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(schema_text).map_err(|e| PolicyError::Schema {
                file: schema_file.to_owned(),
                message: e.to_string(),
            })?;
        let mut policies = PolicySet::new();
        for (file, text) in policy_files {
            let parsed = PolicySet::from_str(text).map_err(|e| PolicyError::Parse {
                file: file.clone(),
                message: e.to_string(),
            })?;
            for policy in parsed.policies() {
                // Ids are per file in Cedar; prefix them so files cannot collide.
                let id = PolicyId::new(format!("{file}:{}", policy.id()));
                policies
                    .add(policy.new_id(id))
                    .map_err(|e| PolicyError::Parse {
                        file: file.clone(),
                        message: e.to_string(),
                    })?;
            }
        }
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !validation.validation_passed() {
            let errors: Vec<String> = validation
                .validation_errors()
                .map(|e| format!("  {e}"))
                .collect();
            return Err(PolicyError::Invalid(errors.join("\n")));
        }
        Ok(Self {
            schema,
            policies,
            authorizer: Authorizer::new(),
        })
    }

    /// Decides one request. Never fails: any error denies, with the error in the decision.
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        match self.evaluate(request) {
            Ok(decision) => decision,
            Err(error) => Decision::Deny {
                policies: Vec::new(),
                errors: vec![error],
            },
        }
    }

    fn evaluate(&self, request: &Request<'_>) -> Result<Decision, String> {
        let uid = |kind: &str, id: &str| -> Result<EntityUid, String> {
            let name = format!("Portcullis::{kind}");
            Ok(EntityUid::from_type_name_and_id(
                name.parse().map_err(|e| format!("{e}"))?,
                id.parse().map_err(|e| format!("{e}"))?,
            ))
        };
        let tenant = request.tenant.unwrap_or("");
        let tenant_uid = uid("Tenant", tenant)?;
        let user_uid = uid("User", &format!("{}|{}", request.issuer, request.subject))?;
        let upstream_uid = uid("Upstream", request.upstream)?;
        let tool_uid = uid("Tool", &format!("{}.{}", request.upstream, request.tool))?;

        let mut entities = Vec::new();
        let mut user_parents: HashSet<EntityUid> = HashSet::new();
        if request.tenant.is_some() {
            entities.push(Entity::new_no_attrs(tenant_uid.clone(), HashSet::new()));
            user_parents.insert(tenant_uid.clone());
        }
        for group in request.groups {
            let group_uid = uid("Group", group)?;
            let parents = request
                .tenant
                .map(|_| HashSet::from([tenant_uid.clone()]))
                .unwrap_or_default();
            entities.push(Entity::new_no_attrs(group_uid.clone(), parents));
            user_parents.insert(group_uid);
        }
        let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
        entities.push(
            Entity::new(
                user_uid.clone(),
                HashMap::from([("issuer".to_owned(), string(request.issuer))]),
                user_parents,
            )
            .map_err(|e| e.to_string())?,
        );
        entities.push(
            Entity::new(
                upstream_uid.clone(),
                HashMap::from([("surface".to_owned(), string(request.surface))]),
                HashSet::new(),
            )
            .map_err(|e| e.to_string())?,
        );
        entities.push(
            Entity::new(
                tool_uid.clone(),
                HashMap::from([
                    ("name".to_owned(), string(request.tool)),
                    ("effect".to_owned(), string(request.effect)),
                    ("surface".to_owned(), string(request.surface)),
                ]),
                HashSet::from([upstream_uid]),
            )
            .map_err(|e| e.to_string())?,
        );
        let entities =
            Entities::from_entities(entities, Some(&self.schema)).map_err(|e| e.to_string())?;
        let set = |values: &BTreeSet<String>| {
            RestrictedExpression::new_set(values.iter().map(|v| string(v)))
        };
        let context = Context::from_pairs([
            ("scopes".to_owned(), set(request.scopes)),
            ("required_scopes".to_owned(), set(request.required_scopes)),
            ("tenant".to_owned(), string(tenant)),
        ])
        .map_err(|e| e.to_string())?;
        let action = uid("Action", request.action.cedar_name())?;
        let cedar_request =
            cedar_policy::Request::new(user_uid, action, tool_uid, context, Some(&self.schema))
                .map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(&cedar_request, &self.policies, &entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        let policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| self.name_of(id))
            .collect();
        // INVARIANT: an evaluation error denies, even if the remaining policies allow.
        if !errors.is_empty() || response.decision() == CedarDecision::Deny {
            return Ok(Decision::Deny { policies, errors });
        }
        let needs_approval = response
            .diagnostics()
            .reason()
            .any(|id| self.policies.annotation(id, APPROVAL) == Some("required"));
        Ok(if needs_approval {
            Decision::ApprovalRequired { policies }
        } else {
            Decision::Allow { policies }
        })
    }

    /// A policy's `@id`, or its file-and-position id when it has none.
    fn name_of(&self, id: &PolicyId) -> String {
        self.policies
            .annotation(id, ID)
            .map_or_else(|| id.to_string(), str::to_owned)
    }
}
