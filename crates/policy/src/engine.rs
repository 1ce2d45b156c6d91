//! Compiling the schema and policies, and evaluating one request to a [`Decision`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use portcullis_core::source::line_column;
use portcullis_core::{Effect, IdentityEnvelope, Surface};
use serde_json::Value;

use crate::decision::{ApprovalRule, Decision, PolicyRef, Verdict};
use crate::memo::{self, Memo};

/// The annotation that turns a permit into "allowed with the person's approval", its value the
/// rule ([`ApprovalRule`]).
const APPROVAL: &str = "approval";
/// The annotation that names a policy in decisions and explanations.
const ID: &str = "id";
/// The annotation whose text a client may be shown when the policy denies.
const REASON: &str = "reason";
/// At most this many of a call's arguments become tags, each at most this long: a policy is
/// decided over a bounded request whatever a client sends.
const MAX_ARGUMENT_TAGS: usize = 64;
const MAX_TAG_LEN: usize = 4096;

/// One source text and the name (a path) it is reported under.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// One problem with the schema or a policy, at a place in a file when Cedar gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Why policies cannot be loaded: every problem found, each naming its file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct PolicyError(pub Vec<Problem>);

/// What the principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ListTool,
    CallTool,
    GetPrompt,
    ReadResource,
}

impl Action {
    pub fn cedar_name(self) -> &'static str {
        match self {
            Action::ListTool => "list_tool",
            Action::CallTool => "call_tool",
            Action::GetPrompt => "get_prompt",
            Action::ReadResource => "read_resource",
        }
    }
}

/// What the request is about.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Tool {
        name: &'a str,
        effect: Effect,
        required_scopes: &'a BTreeSet<String>,
        /// A call's arguments; `None` for a list.
        arguments: Option<&'a serde_json::Map<String, Value>>,
    },
    Prompt {
        name: &'a str,
    },
    Resource {
        uri: &'a str,
    },
}

/// What Portcullis knows about a request beyond who, what and where: the context's flags.
/// All false for lists, prompts and resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// An argument config names as the target tenant or workspace differs from the session's.
    pub crosses_tenant: bool,
    /// An argument config names as a recipient or destination holds one this user has not
    /// had approved before.
    pub new_recipient: bool,
    /// Config marks the tool as changing privileges (roles, permissions, keys).
    pub escalates: bool,
    /// The session has received content from an upstream config does not trust.
    pub tainted: bool,
}

/// One question for the policies.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub envelope: &'a IdentityEnvelope,
    pub action: Action,
    pub upstream: &'a str,
    pub surface: Surface,
    pub target: Target<'a>,
    /// Seconds since the Unix epoch: the caller's clock, so that this crate reads none.
    pub now: u64,
    pub facts: Facts,
}

/// The entity types and actions of the schema, as Cedar names.
#[derive(Debug)]
struct Names {
    tenant: EntityTypeName,
    group: EntityTypeName,
    user: EntityTypeName,
    upstream: EntityTypeName,
    tool: EntityTypeName,
    prompt: EntityTypeName,
    resource: EntityTypeName,
    list_tool: EntityUid,
    call_tool: EntityUid,
    get_prompt: EntityUid,
    read_resource: EntityUid,
}

impl Names {
    fn parse() -> Result<Self, String> {
        let kind = |name: &str| -> Result<EntityTypeName, String> {
            format!("Portcullis::{name}")
                .parse()
                .map_err(|e| format!("{e}"))
        };
        let action = |id: &str| -> Result<EntityUid, String> {
            Ok(EntityUid::from_type_name_and_id(
                kind("Action")?,
                EntityId::new(id),
            ))
        };
        Ok(Self {
            tenant: kind("Tenant")?,
            group: kind("Group")?,
            user: kind("User")?,
            upstream: kind("Upstream")?,
            tool: kind("Tool")?,
            prompt: kind("Prompt")?,
            resource: kind("Resource")?,
            list_tool: action(Action::ListTool.cedar_name())?,
            call_tool: action(Action::CallTool.cedar_name())?,
            get_prompt: action(Action::GetPrompt.cedar_name())?,
            read_resource: action(Action::ReadResource.cedar_name())?,
        })
    }

    fn action(&self, action: Action) -> &EntityUid {
        match action {
            Action::ListTool => &self.list_tool,
            Action::CallTool => &self.call_tool,
            Action::GetPrompt => &self.get_prompt,
            Action::ReadResource => &self.read_resource,
        }
    }
}

fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

/// Compiled, validated policies and the schema they were validated against.
#[derive(Debug)]
pub struct PolicyEngine {
    /// Kept for the tests that check requests against it; not needed to decide.
    #[cfg(test)]
    schema: Schema,
    /// The schema's action entities, built once, when any has a parent (an action group):
    /// then every request's entities include them.
    actions: Vec<Entity>,
    /// Entity type names and action ids, parsed once (Cedar parses them with its full policy
    /// parser, which cost more than deciding).
    names: Names,
    policies: PolicySet,
    /// What decisions say of each policy, read once at load: Cedar parses an annotation's key
    /// on every lookup, which cost a third of a decision.
    meta: HashMap<PolicyId, Meta>,
    authorizer: Authorizer,
    /// Whether any policy may read `context.now` (its text names `now`): then a decision holds
    /// for the second it was made in only.
    reads_the_clock: bool,
    /// Whether any policy may read a call's arguments (its text names `hasTag` or `getTag`):
    /// then decisions are not memoised, their key leaving the arguments out.
    reads_tags: bool,
    /// Decisions already made under these policies.
    memo: Memo,
    /// See [`PolicyEngine::digest`].
    digest: String,
}

/// One policy as decisions name it.
#[derive(Debug)]
struct Meta {
    reference: PolicyRef,
    /// Its `@approval` rule, if it has one.
    approval: Option<ApprovalRule>,
}

impl PolicyEngine {
    /// Parses the schema and every policy file, and validates them together (strict mode).
    /// Every problem is reported, with its file, line and column.
    pub fn load(schema: &Source, policy_files: &[Source]) -> Result<Self, PolicyError> {
        // Every problem in one run: a schema or a file that does not parse does not stop the
        // other files from being parsed, nor the policies that did parse from being validated.
        let mut errors = Vec::new();
        let schema_value = match Schema::from_cedarschema_str(&schema.text) {
            Ok((schema_value, _warnings)) => Some(schema_value),
            Err(e) => {
                errors.extend(problems(&schema.name, &schema.text, &e));
                None
            }
        };
        let (policies, meta, texts) = parse_files(policy_files, &mut errors);
        let Some(schema_value) = schema_value else {
            return Err(PolicyError(errors));
        };
        let validation =
            Validator::new(schema_value.clone()).validate(&policies, ValidationMode::Strict);
        let validated_from = errors.len();
        errors.extend(named_problems(&schema.name, &validation, &texts, &meta));
        // Cedar reports them in no fixed order: in file order, so one run reads like the next.
        if let Some(validated) = errors.get_mut(validated_from..) {
            validated.sort_by(|a, b| {
                (&a.file, a.position, &a.message).cmp(&(&b.file, b.position, &b.message))
            });
        }
        if !errors.is_empty() {
            return Err(PolicyError(errors));
        }
        let actions = schema_value
            .action_entities()
            .map_err(|e| {
                PolicyError(vec![Problem {
                    file: schema.name.clone(),
                    position: None,
                    message: e.to_string(),
                }])
            })?
            .iter()
            .cloned()
            .collect::<Vec<Entity>>();
        // Actions without parents need no entity: `action in [..]` compares them directly, and
        // every entity costs transitive-closure work on each request. With action groups in
        // the schema, all actions are included.
        let actions = if actions
            .iter()
            .all(|action| action.clone().into_inner().2.is_empty())
        {
            Vec::new()
        } else {
            actions
        };
        let names = Names::parse().map_err(|message| {
            PolicyError(vec![Problem {
                file: schema.name.clone(),
                position: None,
                message,
            }])
        })?;
        let reads_the_clock = policies
            .policies()
            .any(|policy| names_now(&policy.to_string()));
        let reads_tags = policies.policies().any(|policy| {
            let text = policy.to_string();
            text.contains("hasTag") || text.contains("getTag")
        });
        Ok(Self {
            #[cfg(test)]
            schema: schema_value,
            actions,
            names,
            policies,
            meta,
            authorizer: Authorizer::new(),
            reads_the_clock,
            reads_tags,
            memo: Memo::default(),
            digest: content_digest(schema, policy_files),
        })
    }

    /// `sha256:<hex>` of what was loaded: the schema's and the policy files' texts, in order,
    /// each with its length (not their names, which differ between machines serving the same
    /// policy). Replicas compare it to find one that serves another policy.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether a decision may change with the time alone (a policy names `now`): a caller that
    /// keeps decisions keeps them for the second they were made in, no longer.
    pub fn reads_the_clock(&self) -> bool {
        self.reads_the_clock
    }

    /// How many decisions the memo keeps.
    #[cfg(test)]
    pub(crate) fn memoised(&self) -> usize {
        self.memo.len()
    }

    /// How many policies are loaded.
    pub fn len(&self) -> usize {
        self.policies.policies().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides one request. Never fails: any error denies, with the error in the decision.
    /// A question asked before under these policies is answered as it was then, without
    /// evaluating again (see [`crate::memo`]).
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        if self.reads_tags {
            return self.decide_now(request);
        }
        self.memo
            .get_or_decide(memo::key(request, self.reads_the_clock), || {
                self.decide_now(request)
            })
    }

    /// Decides one request with Cedar, memo aside.
    pub(crate) fn decide_now(&self, request: &Request<'_>) -> Decision {
        match self.evaluate(request) {
            Ok(decision) => decision,
            Err(error) => Decision {
                verdict: Verdict::Deny,
                policies: Vec::new(),
                errors: vec![error],
            },
        }
    }

    /// The text of a determining policy, for `explain`.
    pub fn policy_text(&self, reference: &PolicyRef) -> Option<String> {
        self.policies
            .policies()
            .find(|p| self.reference(p.id()).id == reference.id)
            .map(ToString::to_string)
    }

    fn evaluate(&self, request: &Request<'_>) -> Result<Decision, String> {
        // INVARIANT: the request and entities are not validated against the schema here: they
        // are built by `cedar_request` alone, whose output the tests validate against the
        // shipped schema; validating every request cost more than evaluating it. A request
        // that did not fit would make policies error, and an error denies.
        let (cedar_request, entities) = self.cedar_request(request, None)?;
        let entities = Entities::from_entities(
            entities.into_iter().chain(self.actions.iter().cloned()),
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(self.authorize(&cedar_request, &entities))
    }

    /// The Cedar request and the entities for one of ours; validated against `schema` when one
    /// is given.
    fn cedar_request(
        &self,
        request: &Request<'_>,
        schema: Option<&Schema>,
    ) -> Result<(cedar_policy::Request, Vec<Entity>), String> {
        let (user_uid, mut entities) = self.principal(request.envelope)?;
        let (resource_uid, required_scopes) = self.resource(request, &mut entities)?;
        if let Some(schema) = schema {
            Entities::from_entities(entities.clone(), Some(schema)).map_err(|e| e.to_string())?;
        }
        let context = context(request, required_scopes)?;
        let action = self.names.action(request.action).clone();
        let cedar_request =
            cedar_policy::Request::new(user_uid, action, resource_uid, context, schema)
                .map_err(|e| e.to_string())?;
        Ok((cedar_request, entities))
    }

    /// The user and the tenant and groups it is in, as entities; the user's uid first.
    /// INVARIANT: what this and [`context`] read of a request is what [`memo::key`] keys.
    fn principal(&self, envelope: &IdentityEnvelope) -> Result<(EntityUid, Vec<Entity>), String> {
        let tenant = envelope.tenant().unwrap_or("");
        let user = envelope.user();
        let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
        let mut entities = Vec::new();
        let mut user_parents: HashSet<EntityUid> = HashSet::new();
        let tenant_uid = uid(&self.names.tenant, tenant);
        if envelope.tenant().is_some() {
            entities.push(Entity::new_no_attrs(tenant_uid.clone(), HashSet::new()));
            user_parents.insert(tenant_uid.clone());
        }
        for group in envelope.groups() {
            let group_uid = uid(&self.names.group, group);
            let parents = envelope
                .tenant()
                .map(|_| HashSet::from([tenant_uid.clone()]))
                .unwrap_or_default();
            entities.push(Entity::new_no_attrs(group_uid.clone(), parents));
            user_parents.insert(group_uid);
        }
        let user_uid = uid(
            &self.names.user,
            &format!("{}|{}", user.issuer, user.subject),
        );
        entities.push(
            Entity::new(
                user_uid.clone(),
                HashMap::from([
                    ("issuer".to_owned(), string(&user.issuer)),
                    ("subject".to_owned(), string(&user.subject)),
                ]),
                user_parents,
            )
            .map_err(|e| e.to_string())?,
        );
        Ok((user_uid, entities))
    }

    /// The upstream and the tool, prompt or resource asked about, added to `entities`; the
    /// resource's uid and the scopes it requires.
    fn resource<'r>(
        &self,
        request: &Request<'r>,
        entities: &mut Vec<Entity>,
    ) -> Result<(EntityUid, &'r BTreeSet<String>), String> {
        static NO_SCOPES: BTreeSet<String> = BTreeSet::new();
        let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
        let upstream_uid = uid(&self.names.upstream, request.upstream);
        entities.push(
            Entity::new(
                upstream_uid.clone(),
                HashMap::from([("surface".to_owned(), string(request.surface.as_str()))]),
                HashSet::new(),
            )
            .map_err(|e| e.to_string())?,
        );
        let parents = HashSet::from([upstream_uid]);
        let (resource_uid, resource, required_scopes) = match request.target {
            Target::Tool {
                name,
                effect,
                required_scopes,
                arguments,
            } => {
                let resource_uid = uid(&self.names.tool, &format!("{}.{name}", request.upstream));
                let entity = Entity::new_with_tags(
                    resource_uid.clone(),
                    HashMap::from([
                        ("name".to_owned(), string(name)),
                        ("effect".to_owned(), string(effect.as_str())),
                        ("surface".to_owned(), string(request.surface.as_str())),
                    ]),
                    parents,
                    argument_tags(arguments),
                )
                .map_err(|e| e.to_string())?;
                (resource_uid, entity, required_scopes)
            }
            Target::Prompt { name } => {
                let resource_uid = uid(&self.names.prompt, &format!("{}.{name}", request.upstream));
                let entity = Entity::new(
                    resource_uid.clone(),
                    HashMap::from([("name".to_owned(), string(name))]),
                    parents,
                )
                .map_err(|e| e.to_string())?;
                (resource_uid, entity, &NO_SCOPES)
            }
            Target::Resource { uri } => {
                let resource_uid =
                    uid(&self.names.resource, &format!("{}+{uri}", request.upstream));
                let entity = Entity::new(
                    resource_uid.clone(),
                    HashMap::from([("uri".to_owned(), string(uri))]),
                    parents,
                )
                .map_err(|e| e.to_string())?;
                (resource_uid, entity, &NO_SCOPES)
            }
        };
        entities.push(resource);
        Ok((resource_uid, required_scopes))
    }

    /// Checks that a request as Portcullis builds it fits the schema (for tests).
    #[cfg(test)]
    pub(crate) fn conforms(&self, request: &Request<'_>) -> Result<(), String> {
        self.cedar_request(request, Some(&self.schema)).map(|_| ())
    }

    fn authorize(&self, cedar_request: &cedar_policy::Request, entities: &Entities) -> Decision {
        let response = self
            .authorizer
            .is_authorized(cedar_request, &self.policies, entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        // Cedar gives the determining policies as a set: sorted, so that logs and records
        // name them in the same order every time.
        let mut policies: Vec<PolicyRef> = response
            .diagnostics()
            .reason()
            .map(|id| self.reference(id))
            .collect();
        policies.sort_by(|a, b| a.id.cmp(&b.id));
        // INVARIANT: an evaluation error denies, even if the remaining policies allow (Cedar
        // skips an erroring policy, which could be a `forbid`).
        // The strictest rule of the determining permits that ask for approval.
        let rule = response
            .diagnostics()
            .reason()
            .filter_map(|id| self.meta.get(id).and_then(|m| m.approval))
            .max();
        let verdict = if !errors.is_empty() || response.decision() == CedarDecision::Deny {
            Verdict::Deny
        } else if let Some(rule) = rule {
            Verdict::ApprovalRequired(rule)
        } else {
            Verdict::Allow
        };
        Decision {
            verdict,
            policies,
            errors,
        }
    }

    fn reference(&self, id: &PolicyId) -> PolicyRef {
        self.meta.get(id).map_or_else(
            || PolicyRef {
                id: id.to_string(),
                file: String::new(),
                line: 0,
                reason: None,
            },
            |m| m.reference.clone(),
        )
    }
}

/// Each policy of each file, its metadata and its file's text, by its id (`FILE:id`, so files
/// cannot collide); what does not parse goes into `errors`.
fn parse_files<'a>(
    policy_files: &'a [Source],
    errors: &mut Vec<Problem>,
) -> (PolicySet, HashMap<PolicyId, Meta>, Texts<'a>) {
    let mut policies = PolicySet::new();
    let mut meta: HashMap<PolicyId, Meta> = HashMap::new();
    let mut texts: Texts<'a> = HashMap::new();
    for file in policy_files {
        let parsed = match PolicySet::from_str(&file.text) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.extend(problems(&file.name, &file.text, &e));
                continue;
            }
        };
        for policy in parsed.policies() {
            // Ids are per file in Cedar; prefix them so files cannot collide.
            let id = PolicyId::new(format!("{}:{}", file.name, policy.id()));
            let line = policy
                .annotation(ID)
                .and_then(|name| line_of(&file.text, &format!("@{ID}(\"{name}\")")))
                .unwrap_or(0);
            let approval = approval_rule(file, policy, line, errors);
            meta.insert(
                id.clone(),
                Meta {
                    reference: PolicyRef {
                        id: policy
                            .annotation(ID)
                            .map_or_else(|| id.to_string(), str::to_owned),
                        file: file.name.clone(),
                        line,
                        reason: policy.annotation(REASON).map(str::to_owned),
                    },
                    approval,
                },
            );
            texts.insert(id.clone(), (&file.name, &file.text));
            if let Err(e) = policies.add(policy.new_id(id)) {
                errors.push(Problem {
                    file: file.name.clone(),
                    position: (line > 0).then_some((line, 1)),
                    message: e.to_string(),
                });
            }
        }
    }
    (policies, meta, texts)
}

/// Validation errors name a policy; this maps each back to its file's name and text.
type Texts<'a> = HashMap<PolicyId, (&'a str, &'a str)>;

/// The validation errors as problems, each naming its policy as the person wrote it (its `@id`,
/// not Cedar's generated `FILE:policyN`), at its file and line.
fn named_problems(
    schema_name: &str,
    validation: &cedar_policy::ValidationResult,
    texts: &Texts<'_>,
    meta: &HashMap<PolicyId, Meta>,
) -> Vec<Problem> {
    let mut errors = Vec::new();
    for error in validation.validation_errors() {
        let (file, text) = texts
            .get(error.policy_id())
            .copied()
            .unwrap_or((schema_name, ""));
        // Named as the person wrote it: its `@id`, not Cedar's generated `FILE:policyN`.
        let internal = error.policy_id().to_string();
        let named = meta.get(error.policy_id()).map_or_else(
            || internal.clone(),
            |m| {
                if m.reference.id == internal {
                    internal
                        .strip_prefix(&format!("{file}:"))
                        .unwrap_or(&internal)
                        .to_owned()
                } else {
                    m.reference.id.clone()
                }
            },
        );
        let unnamed = format!("for policy `{internal}`, ");
        errors.extend(problems(file, text, error).into_iter().map(|mut problem| {
            let message = problem.message.replace(&unnamed, "");
            problem.message = format!("policy `{named}`: {message}");
            problem
        }));
    }
    errors
}

/// The line of `needle` (an annotation as written, `@id("name")`), when it occurs exactly once
/// in the file (Cedar's API gives no position for a parsed policy).
fn line_of(text: &str, needle: &str) -> Option<usize> {
    let mut found = text.match_indices(needle);
    let (offset, _) = found.next()?;
    found.next().is_none().then(|| line_column(text, offset).0)
}

/// The rule of `policy`'s `@approval` annotation, if it has one. Any value but the known ones
/// is a problem (reported at the annotation's line when it is unique in the file, else at the
/// policy's `@id`, else without a line): an approval rule nobody enforces must never pass for one.
fn approval_rule(
    file: &Source,
    policy: &cedar_policy::Policy,
    id_line: usize,
    errors: &mut Vec<Problem>,
) -> Option<ApprovalRule> {
    let value = policy.annotation(APPROVAL)?;
    let rule = ApprovalRule::parse(value);
    if rule.is_none() {
        let line = line_of(&file.text, &format!("@{APPROVAL}(\"{value}\")"))
            .or_else(|| line_of(&file.text, &format!("@{APPROVAL}")))
            .unwrap_or(id_line);
        let named = policy.annotation(ID).map_or_else(
            || format!("policy `{}`", policy.id()),
            |id| format!("policy `{id}`"),
        );
        errors.push(Problem {
            file: file.name.clone(),
            position: (line > 0).then_some((line, 1)),
            message: format!(
                "{named}: `@{APPROVAL}(\"{value}\")` is not an approval rule; write one of {}",
                ApprovalRule::VALUES
                    .map(|v| format!("`\"{v}\"`"))
                    .join(", ")
            ),
        });
    }
    rule
}

/// A call's top-level scalar arguments as tags: strings as they are, numbers and booleans as
/// their JSON text. Objects, arrays and nulls are left out, as are values over the size limit
/// (a policy that needs one tests `hasTag` and sees it absent: it cannot be misled by a prefix).
fn argument_tags(
    arguments: Option<&serde_json::Map<String, Value>>,
) -> HashMap<String, RestrictedExpression> {
    arguments
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            (text.len() <= MAX_TAG_LEN)
                .then(|| (key.clone(), RestrictedExpression::new_string(text)))
        })
        .take(MAX_ARGUMENT_TAGS)
        .collect()
}

/// Cedar's diagnostics as problems: one per labelled place, or one without a place.
fn problems(file: &str, text: &str, diagnostic: &dyn Diagnostic) -> Vec<Problem> {
    let mut found = Vec::new();
    let mut push = |d: &dyn Diagnostic| {
        let mut message = d.to_string();
        if let Some(help) = d.help() {
            message = format!("{message} ({help})");
        }
        let position = d
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|label| line_column(text, label.offset()));
        found.push(Problem {
            file: file.to_owned(),
            position,
            message,
        });
    };
    match diagnostic.related() {
        Some(related) => {
            let mut any = false;
            for d in related {
                any = true;
                push(d);
            }
            if !any {
                push(diagnostic);
            }
        }
        None => push(diagnostic),
    }
    found
}

/// The request's context: scopes held and required, tenant, time, and the call's facts.
fn context(request: &Request<'_>, required_scopes: &BTreeSet<String>) -> Result<Context, String> {
    let envelope = request.envelope;
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let set =
        |values: &BTreeSet<String>| RestrictedExpression::new_set(values.iter().map(|v| string(v)));
    let now = i64::try_from(request.now).map_err(|_| "the clock is out of range".to_owned())?;
    let fact = |name: &str, value: bool| (name.to_owned(), RestrictedExpression::new_bool(value));
    Context::from_pairs([
        ("scopes".to_owned(), set(envelope.scopes())),
        ("required_scopes".to_owned(), set(required_scopes)),
        ("tenant".to_owned(), string(envelope.tenant().unwrap_or(""))),
        ("now".to_owned(), RestrictedExpression::new_long(now)),
        fact("crosses_tenant", request.facts.crosses_tenant),
        fact("new_recipient", request.facts.new_recipient),
        fact("escalates", request.facts.escalates),
        fact("tainted", request.facts.tainted),
    ])
    .map_err(|e| e.to_string())
}

/// Whether `text` has the word `now` (in `context.now`, or anywhere else: a false match only
/// keeps decisions shorter).
fn names_now(text: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices("now").any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + 3..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

fn content_digest(schema: &Source, policy_files: &[Source]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    for source in std::iter::once(schema).chain(policy_files) {
        hasher.update(source.text.len().to_le_bytes());
        hasher.update(source.text.as_bytes());
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{digest}")
}

#[cfg(test)]
mod clock_tests {
    use super::names_now;

    #[test]
    fn a_policy_reads_the_clock_when_it_names_now_as_a_word() {
        assert!(names_now("when { context.now < 1790000000 }"));
        assert!(names_now("when { context[\"now\"] > 0 }"));
        assert!(!names_now("when { resource.name == \"known\" }"));
        assert!(!names_now("when { resource.name like \"snow_*\" }"));
        assert!(!names_now("permit (principal, action, resource);"));
    }
}
