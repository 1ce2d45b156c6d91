#!/usr/bin/env python3
"""Writes fixtures/tool-search/catalog.json, the tool search benchmark's catalog: the tools the
official servers the tests install really list (server-everything, server-filesystem, listed
by the official Python SDK client driver) and synthetic tools of fifty-one everyday services,
named and described the way real MCP servers do. Deterministic: the same inputs give the same
file.

    .venv/bin/python tests/py/client.py --scenario list --mode legacy --stdio -- \\
        node tests/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio > everything.json
    .venv/bin/python tests/py/client.py --scenario list --mode legacy --stdio -- \\
        node tests/node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js /tmp > filesystem.json
    python3 scripts/tool-catalog.py everything.json filesystem.json > fixtures/tool-search/catalog.json
"""
import json
import sys

# service: (display name, [(object, plural, id parameter, [extra create/update parameters])],
#           [(special tool, description, [parameters])])
SERVICES = {
    "github": ("GitHub", [
        ("repository", "repositories", "repo", ["description", "private"]),
        ("issue", "issues", "issue_number", ["title", "body", "labels"]),
        ("pull_request", "pull requests", "pull_number", ["title", "head", "base"]),
        ("branch", "branches", "branch", ["from_sha"]),
        ("release", "releases", "release_id", ["tag_name", "notes"]),
    ], [
        ("merge_pull_request", "Merge an open pull request into its base branch using merge, squash or rebase.", ["owner", "repo", "pull_number", "merge_method"]),
        ("search_code", "Search source code across GitHub repositories with GitHub's code search syntax.", ["query", "per_page"]),
        ("get_file_contents", "Get the contents of a file or directory in a repository at a given ref.", ["owner", "repo", "path", "ref"]),
        ("fork_repository", "Fork a repository to your account or an organization.", ["owner", "repo", "organization"]),
        ("request_review", "Request reviewers for a pull request.", ["owner", "repo", "pull_number", "reviewers"]),
    ]),
    "gitlab": ("GitLab", [
        ("project", "projects", "project_id", ["name", "visibility"]),
        ("merge_request", "merge requests", "merge_request_iid", ["title", "source_branch", "target_branch"]),
        ("pipeline", "pipelines", "pipeline_id", ["ref"]),
    ], [
        ("retry_pipeline", "Retry the failed jobs of a CI/CD pipeline.", ["project_id", "pipeline_id"]),
    ]),
    "jira": ("Jira", [
        ("issue", "issues", "issue_key", ["summary", "description", "issue_type", "priority"]),
        ("sprint", "sprints", "sprint_id", ["name", "start_date", "end_date"]),
        ("comment", "comments", "comment_id", ["issue_key", "body"]),
        ("worklog", "worklogs", "worklog_id", ["issue_key", "time_spent"]),
    ], [
        ("transition_issue", "Move a Jira issue to another workflow status, such as In Progress or Done.", ["issue_key", "transition"]),
        ("assign_issue", "Assign a Jira issue to a user.", ["issue_key", "account_id"]),
        ("search_issues_jql", "Search Jira issues with a JQL query.", ["jql", "max_results"]),
    ]),
    "linear": ("Linear", [
        ("issue", "issues", "issue_id", ["title", "description", "team_id", "priority"]),
        ("project", "projects", "project_id", ["name", "target_date"]),
        ("cycle", "cycles", "cycle_id", ["team_id", "starts_at"]),
    ], []),
    "slack": ("Slack", [
        ("channel", "channels", "channel_id", ["name", "is_private"]),
        ("reminder", "reminders", "reminder_id", ["text", "time"]),
        ("user_group", "user groups", "usergroup_id", ["name", "handle"]),
    ], [
        ("post_message", "Post a message to a Slack channel or thread as the bot user.", ["channel_id", "text", "thread_ts"]),
        ("add_reaction", "Add an emoji reaction to a Slack message.", ["channel_id", "timestamp", "name"]),
        ("get_channel_history", "Get recent messages from a Slack channel.", ["channel_id", "limit", "oldest"]),
        ("upload_file", "Upload a file to Slack and share it in channels.", ["channels", "filename", "content"]),
        ("invite_to_channel", "Invite users to a Slack channel.", ["channel_id", "users"]),
        ("set_status", "Set the authenticated user's Slack status text and emoji.", ["status_text", "status_emoji"]),
    ]),
    "discord": ("Discord", [
        ("channel", "channels", "channel_id", ["name", "topic"]),
        ("role", "roles", "role_id", ["name", "permissions"]),
    ], [
        ("send_message", "Send a message to a Discord channel.", ["channel_id", "content"]),
        ("ban_member", "Ban a member from a Discord server.", ["guild_id", "user_id", "reason"]),
    ]),
    "gmail": ("Gmail", [
        ("draft", "drafts", "draft_id", ["to", "subject", "body"]),
        ("label", "labels", "label_id", ["name", "color"]),
        ("filter", "filters", "filter_id", ["criteria", "action"]),
    ], [
        ("send_email", "Send an email from the user's Gmail account.", ["to", "cc", "bcc", "subject", "body"]),
        ("search_emails", "Search emails in Gmail with Gmail search operators like from: and has:attachment.", ["query", "max_results"]),
        ("read_email", "Read the full content of an email message, headers and body.", ["message_id"]),
        ("archive_email", "Archive an email, removing it from the inbox.", ["message_id"]),
        ("get_attachment", "Download an attachment of an email message.", ["message_id", "attachment_id"]),
    ]),
    "outlook": ("Microsoft Outlook", [
        ("contact", "contacts", "contact_id", ["given_name", "surname", "email_addresses"]),
        ("mail_folder", "mail folders", "folder_id", ["display_name"]),
    ], [
        ("send_mail", "Send a mail message through Microsoft Outlook.", ["to_recipients", "subject", "body"]),
        ("reply_to_message", "Reply to an Outlook message.", ["message_id", "comment"]),
    ]),
    "calendar": ("Google Calendar", [
        ("event", "events", "event_id", ["summary", "start", "end", "attendees", "location"]),
        ("calendar", "calendars", "calendar_id", ["summary", "time_zone"]),
    ], [
        ("find_free_time", "Find free time slots shared by several people's calendars within a time range.", ["attendees", "time_min", "time_max", "duration_minutes"]),
        ("respond_to_event", "Accept, decline or tentatively accept a calendar invitation.", ["event_id", "response"]),
    ]),
    "drive": ("Google Drive", [
        ("file", "files", "file_id", ["name", "mime_type", "parents"]),
        ("folder", "folders", "folder_id", ["name", "parent_id"]),
        ("permission", "permissions", "permission_id", ["file_id", "role", "email_address"]),
    ], [
        ("search_files", "Search Google Drive files by name, content or type.", ["query", "page_size"]),
        ("export_file", "Export a Google Docs, Sheets or Slides file to PDF, DOCX or CSV.", ["file_id", "mime_type"]),
    ]),
    "dropbox": ("Dropbox", [
        ("folder", "folders", "path", []),
        ("shared_link", "shared links", "url", ["path", "expires"]),
    ], [
        ("upload", "Upload a file to Dropbox at the given path.", ["path", "content", "mode"]),
        ("download", "Download a file from Dropbox.", ["path"]),
        ("move", "Move a file or folder to a new location in Dropbox.", ["from_path", "to_path"]),
    ]),
    "notion": ("Notion", [
        ("page", "pages", "page_id", ["parent_id", "title", "properties"]),
        ("database", "databases", "database_id", ["title", "properties"]),
        ("block", "blocks", "block_id", ["children"]),
    ], [
        ("query_database", "Query a Notion database with filters and sorts.", ["database_id", "filter", "sorts"]),
        ("search", "Search Notion pages and databases by title.", ["query", "filter"]),
    ]),
    "confluence": ("Confluence", [
        ("page", "pages", "page_id", ["space_key", "title", "body"]),
        ("space", "spaces", "space_key", ["name", "description"]),
    ], [
        ("search_content", "Search Confluence content with CQL.", ["cql", "limit"]),
    ]),
    "postgres": ("PostgreSQL", [
        ("table", "tables", "table_name", ["columns"]),
        ("index", "indexes", "index_name", ["table_name", "columns"]),
    ], [
        ("run_query", "Run a read-only SQL query against the PostgreSQL database and return rows.", ["sql", "params"]),
        ("execute_statement", "Execute a SQL statement that modifies data (INSERT, UPDATE, DELETE).", ["sql", "params"]),
        ("describe_table", "Describe a table's columns, types and constraints.", ["table_name", "schema"]),
        ("explain_query", "Show the query plan PostgreSQL would use for a query.", ["sql"]),
    ]),
    "mysql": ("MySQL", [
        ("database", "databases", "database_name", ["charset"]),
    ], [
        ("query", "Run a SQL query on the MySQL server.", ["sql"]),
        ("show_tables", "Show the tables of a MySQL database.", ["database_name"]),
    ]),
    "mongodb": ("MongoDB", [
        ("collection", "collections", "collection", ["database", "validator"]),
    ], [
        ("find_documents", "Find documents in a MongoDB collection matching a filter.", ["database", "collection", "filter", "limit"]),
        ("insert_documents", "Insert documents into a MongoDB collection.", ["database", "collection", "documents"]),
        ("aggregate", "Run an aggregation pipeline on a MongoDB collection.", ["database", "collection", "pipeline"]),
    ]),
    "redis": ("Redis", [], [
        ("get", "Get the string value of a Redis key.", ["key"]),
        ("set", "Set a Redis key to a string value, with an optional expiry in seconds.", ["key", "value", "ex"]),
        ("delete_keys", "Delete one or more Redis keys.", ["keys"]),
        ("scan_keys", "Scan Redis keys matching a pattern.", ["pattern", "count"]),
        ("publish", "Publish a message on a Redis pub/sub channel.", ["channel", "message"]),
    ]),
    "s3": ("Amazon S3", [
        ("bucket", "buckets", "bucket", ["region", "acl"]),
    ], [
        ("put_object", "Upload an object to an S3 bucket.", ["bucket", "key", "body", "content_type"]),
        ("get_object", "Download an object from an S3 bucket.", ["bucket", "key"]),
        ("list_objects", "List the objects in an S3 bucket under a prefix.", ["bucket", "prefix", "max_keys"]),
        ("presign_url", "Create a presigned URL that grants temporary access to an S3 object.", ["bucket", "key", "expires_in"]),
    ]),
    "kubernetes": ("Kubernetes", [
        ("pod", "pods", "pod_name", ["namespace", "manifest"]),
        ("deployment", "deployments", "deployment_name", ["namespace", "replicas", "image"]),
        ("service", "services", "service_name", ["namespace", "ports"]),
        ("namespace", "namespaces", "namespace", ["labels"]),
        ("config_map", "config maps", "config_map_name", ["namespace", "data"]),
    ], [
        ("get_pod_logs", "Get the logs of a container in a Kubernetes pod.", ["pod_name", "namespace", "container", "tail_lines"]),
        ("scale_deployment", "Scale a Kubernetes deployment to a number of replicas.", ["deployment_name", "namespace", "replicas"]),
        ("rollout_restart", "Restart a Kubernetes deployment by triggering a rolling update.", ["deployment_name", "namespace"]),
        ("exec_in_pod", "Execute a command in a running Kubernetes pod container.", ["pod_name", "namespace", "command"]),
        ("apply_manifest", "Apply a YAML manifest to the Kubernetes cluster, like kubectl apply.", ["manifest"]),
    ]),
    "docker": ("Docker", [
        ("container", "containers", "container_id", ["image", "env", "ports"]),
        ("image", "images", "image", ["tag"]),
        ("volume", "volumes", "volume_name", ["driver"]),
    ], [
        ("start_container", "Start a stopped Docker container.", ["container_id"]),
        ("stop_container", "Stop a running Docker container.", ["container_id", "timeout"]),
        ("container_logs", "Fetch the logs of a Docker container.", ["container_id", "tail"]),
        ("pull_image", "Pull an image from a container registry.", ["image", "tag"]),
    ]),
    "ec2": ("Amazon EC2", [
        ("instance", "instances", "instance_id", ["instance_type", "image_id", "key_name"]),
        ("security_group", "security groups", "group_id", ["description", "vpc_id"]),
        ("snapshot", "snapshots", "snapshot_id", ["volume_id", "description"]),
    ], [
        ("start_instances", "Start stopped EC2 instances.", ["instance_ids"]),
        ("stop_instances", "Stop running EC2 instances.", ["instance_ids", "force"]),
        ("reboot_instances", "Reboot EC2 instances.", ["instance_ids"]),
    ]),
    "stripe": ("Stripe", [
        ("customer", "customers", "customer_id", ["email", "name", "metadata"]),
        ("invoice", "invoices", "invoice_id", ["customer_id", "due_date"]),
        ("product", "products", "product_id", ["name", "description"]),
        ("price", "prices", "price_id", ["product_id", "unit_amount", "currency"]),
        ("subscription", "subscriptions", "subscription_id", ["customer_id", "price_id"]),
    ], [
        ("create_refund", "Refund a charge or payment intent, fully or partially.", ["payment_intent", "amount", "reason"]),
        ("cancel_subscription", "Cancel a customer's Stripe subscription immediately or at period end.", ["subscription_id", "at_period_end"]),
        ("create_payment_link", "Create a Stripe payment link for a price.", ["price_id", "quantity"]),
        ("get_balance", "Retrieve the Stripe account balance.", []),
    ]),
    "shopify": ("Shopify", [
        ("product", "products", "product_id", ["title", "vendor", "variants"]),
        ("order", "orders", "order_id", ["line_items", "customer"]),
        ("customer", "customers", "customer_id", ["email", "first_name", "last_name"]),
    ], [
        ("adjust_inventory", "Adjust the inventory level of a product variant at a location.", ["inventory_item_id", "location_id", "delta"]),
        ("fulfill_order", "Mark an order as fulfilled and add tracking information.", ["order_id", "tracking_number"]),
    ]),
    "salesforce": ("Salesforce", [
        ("lead", "leads", "lead_id", ["first_name", "last_name", "company"]),
        ("opportunity", "opportunities", "opportunity_id", ["name", "stage", "amount", "close_date"]),
        ("account", "accounts", "account_id", ["name", "industry"]),
    ], [
        ("run_soql", "Run a SOQL query against Salesforce.", ["soql"]),
        ("convert_lead", "Convert a Salesforce lead into an account, contact and opportunity.", ["lead_id"]),
    ]),
    "hubspot": ("HubSpot", [
        ("contact", "contacts", "contact_id", ["email", "firstname", "lastname"]),
        ("deal", "deals", "deal_id", ["dealname", "amount", "dealstage"]),
        ("company", "companies", "company_id", ["name", "domain"]),
    ], []),
    "zendesk": ("Zendesk", [
        ("ticket", "tickets", "ticket_id", ["subject", "comment", "priority", "requester"]),
        ("macro", "macros", "macro_id", ["title", "actions"]),
    ], [
        ("add_ticket_comment", "Add a public reply or internal note to a Zendesk ticket.", ["ticket_id", "body", "public"]),
    ]),
    "intercom": ("Intercom", [
        ("conversation", "conversations", "conversation_id", ["body"]),
    ], [
        ("reply_to_conversation", "Reply to an Intercom conversation as an admin.", ["conversation_id", "body"]),
    ]),
    "pagerduty": ("PagerDuty", [
        ("incident", "incidents", "incident_id", ["title", "service_id", "urgency"]),
        ("schedule", "schedules", "schedule_id", ["name", "time_zone"]),
    ], [
        ("acknowledge_incident", "Acknowledge a triggered PagerDuty incident.", ["incident_id"]),
        ("resolve_incident", "Resolve a PagerDuty incident.", ["incident_id", "resolution"]),
        ("get_oncall", "Get who is on call now for an escalation policy or schedule.", ["schedule_id", "escalation_policy_id"]),
    ]),
    "datadog": ("Datadog", [
        ("monitor", "monitors", "monitor_id", ["name", "query", "message"]),
        ("dashboard", "dashboards", "dashboard_id", ["title", "widgets"]),
    ], [
        ("query_metrics", "Query Datadog timeseries metrics over a time range.", ["query", "from", "to"]),
        ("search_logs", "Search Datadog logs with a log query.", ["query", "from", "to", "limit"]),
        ("mute_monitor", "Mute a Datadog monitor for a while.", ["monitor_id", "end"]),
    ]),
    "sentry": ("Sentry", [
        ("project", "projects", "project_slug", ["name", "platform"]),
        ("release", "releases", "version", ["projects", "refs"]),
    ], [
        ("list_issues", "List unresolved error issues of a Sentry project.", ["project_slug", "query"]),
        ("get_issue_events", "Get the events (stack traces) of a Sentry issue.", ["issue_id"]),
        ("resolve_issue", "Mark a Sentry issue as resolved.", ["issue_id"]),
    ]),
    "twilio": ("Twilio", [], [
        ("send_sms", "Send an SMS text message to a phone number.", ["to", "from", "body"]),
        ("make_call", "Place an outbound phone call that plays a message.", ["to", "from", "twiml"]),
        ("list_messages", "List SMS messages sent and received.", ["to", "from", "date_sent"]),
    ]),
    "figma": ("Figma", [
        ("comment", "comments", "comment_id", ["file_key", "message"]),
    ], [
        ("get_file", "Get a Figma file's document tree, frames and components.", ["file_key"]),
        ("export_images", "Export Figma nodes as PNG, SVG or PDF images.", ["file_key", "ids", "format"]),
    ]),
    "asana": ("Asana", [
        ("task", "tasks", "task_gid", ["name", "notes", "assignee", "due_on"]),
        ("project", "projects", "project_gid", ["name", "team"]),
    ], [
        ("complete_task", "Mark an Asana task as complete.", ["task_gid"]),
    ]),
    "trello": ("Trello", [
        ("board", "boards", "board_id", ["name", "desc"]),
        ("card", "cards", "card_id", ["name", "desc", "list_id", "due"]),
    ], [
        ("move_card", "Move a Trello card to another list.", ["card_id", "list_id"]),
    ]),
    "airtable": ("Airtable", [
        ("record", "records", "record_id", ["base_id", "table", "fields"]),
    ], [
        ("list_bases", "List the Airtable bases the token can access.", []),
    ]),
    "spotify": ("Spotify", [
        ("playlist", "playlists", "playlist_id", ["name", "public"]),
    ], [
        ("play", "Start or resume playback on the user's active Spotify device.", ["uri", "device_id"]),
        ("pause", "Pause Spotify playback.", ["device_id"]),
        ("search_tracks", "Search Spotify for tracks, albums or artists.", ["query", "type"]),
        ("add_to_playlist", "Add tracks to a Spotify playlist.", ["playlist_id", "uris"]),
    ]),
    "weather": ("OpenWeather", [], [
        ("get_current", "Get the current weather conditions for a city or coordinates.", ["city", "lat", "lon", "units"]),
        ("get_forecast", "Get the hourly and daily weather forecast for the next days.", ["city", "days", "units"]),
        ("get_alerts", "Get severe weather alerts for a region.", ["region"]),
    ]),
    "maps": ("Google Maps", [], [
        ("geocode", "Convert an address into latitude and longitude coordinates.", ["address"]),
        ("reverse_geocode", "Convert coordinates into a street address.", ["lat", "lng"]),
        ("directions", "Get driving, walking or transit directions between two places.", ["origin", "destination", "mode"]),
        ("search_places", "Search nearby places such as restaurants or shops.", ["query", "location", "radius"]),
        ("distance_matrix", "Compute travel distance and time between several origins and destinations.", ["origins", "destinations"]),
    ]),
    "browser": ("Headless browser", [], [
        ("navigate", "Open a URL in the browser page.", ["url"]),
        ("screenshot", "Take a screenshot of the current page or an element.", ["selector", "full_page"]),
        ("click", "Click an element on the page.", ["selector"]),
        ("fill", "Type text into an input field.", ["selector", "value"]),
        ("evaluate", "Run JavaScript in the page and return the result.", ["script"]),
    ]),
    "websearch": ("Web search", [], [
        ("search", "Search the web and return result titles, URLs and snippets.", ["query", "count"]),
        ("news", "Search recent news articles.", ["query", "freshness"]),
        ("fetch_page", "Fetch a web page and return its text as markdown.", ["url", "max_length"]),
    ]),
    "translate": ("DeepL", [], [
        ("translate_text", "Translate text into another language.", ["text", "target_lang", "source_lang"]),
        ("detect_language", "Detect the language of a text.", ["text"]),
    ]),
    "memory": ("Knowledge graph memory", [
        ("entity", "entities", "name", ["entity_type", "observations"]),
        ("relation", "relations", "relation_id", ["from", "to", "relation_type"]),
    ], [
        ("search_nodes", "Search the knowledge graph for entities matching a query.", ["query"]),
    ]),
    "git": ("Git", [
        ("branch", "branches", "branch_name", ["base"]),
    ], [
        ("status", "Show the working tree status of a local git repository.", ["repo_path"]),
        ("diff", "Show changes between the working tree and the index or a commit.", ["repo_path", "target"]),
        ("commit", "Record staged changes in the repository with a message.", ["repo_path", "message"]),
        ("log", "Show the commit history of a repository.", ["repo_path", "max_count"]),
        ("checkout", "Switch the working tree to another branch.", ["repo_path", "branch_name"]),
    ]),
    "time": ("Time", [], [
        ("get_current_time", "Get the current time in a given IANA timezone.", ["timezone"]),
        ("convert_time", "Convert a time between two timezones.", ["time", "source_timezone", "target_timezone"]),
    ]),
    "youtube": ("YouTube", [
        ("playlist", "playlists", "playlist_id", ["title", "privacy_status"]),
    ], [
        ("get_transcript", "Get the transcript (captions) of a YouTube video.", ["video_id", "language"]),
        ("search_videos", "Search YouTube videos.", ["query", "max_results"]),
        ("upload_video", "Upload a video to the user's YouTube channel.", ["title", "description", "file"]),
    ]),
    "zoom": ("Zoom", [
        ("meeting", "meetings", "meeting_id", ["topic", "start_time", "duration"]),
        ("webinar", "webinars", "webinar_id", ["topic", "start_time"]),
    ], [
        ("get_recording", "Get the cloud recording files of a Zoom meeting.", ["meeting_id"]),
    ]),
    "quickbooks": ("QuickBooks", [
        ("invoice", "invoices", "invoice_id", ["customer_ref", "line"]),
        ("bill", "bills", "bill_id", ["vendor_ref", "line"]),
        ("vendor", "vendors", "vendor_id", ["display_name"]),
    ], [
        ("profit_and_loss_report", "Run a profit and loss report for a period.", ["start_date", "end_date"]),
    ]),
    "vercel": ("Vercel", [
        ("project", "projects", "project_id", ["name", "framework"]),
        ("deployment", "deployments", "deployment_id", ["project_id", "target"]),
        ("env_var", "environment variables", "env_id", ["project_id", "key", "value", "target"]),
    ], [
        ("promote_deployment", "Promote a Vercel deployment to production.", ["deployment_id"]),
        ("get_build_logs", "Get the build logs of a Vercel deployment.", ["deployment_id"]),
    ]),
    "cloudflare": ("Cloudflare", [
        ("dns_record", "DNS records", "record_id", ["zone_id", "type", "name", "content", "ttl"]),
        ("worker", "workers", "script_name", ["content"]),
    ], [
        ("purge_cache", "Purge cached files of a Cloudflare zone.", ["zone_id", "files"]),
    ]),
    "npm": ("npm registry", [], [
        ("search_packages", "Search the npm registry for packages.", ["text", "size"]),
        ("get_package", "Get an npm package's metadata: versions, maintainers, dependencies.", ["name"]),
    ]),
    "pypi": ("PyPI", [], [
        ("get_package_info", "Get a Python package's latest version, summary and requirements from PyPI.", ["name"]),
    ]),
}

# More objects of the services above (each gets the five CRUD tools).
MORE_OBJECTS = {
    "github": [("gist", "gists", "gist_id", ["description", "files"]), ("label", "labels", "name", ["color"]), ("webhook", "webhooks", "hook_id", ["url", "events"]), ("deploy_key", "deploy keys", "key_id", ["title", "key"]), ("milestone", "milestones", "milestone_number", ["title", "due_on"])],
    "gitlab": [("issue", "issues", "issue_iid", ["title", "description"]), ("runner", "runners", "runner_id", ["description", "tag_list"]), ("variable", "CI/CD variables", "key", ["value", "protected"])],
    "jira": [("board", "boards", "board_id", ["name", "type"]), ("version", "versions", "version_id", ["name", "release_date"]), ("component", "components", "component_id", ["name", "lead"])],
    "linear": [("label", "labels", "label_id", ["name", "color"]), ("comment", "comments", "comment_id", ["issue_id", "body"])],
    "slack": [("bookmark", "bookmarks", "bookmark_id", ["channel_id", "title", "link"]), ("scheduled_message", "scheduled messages", "scheduled_message_id", ["channel_id", "text", "post_at"])],
    "discord": [("webhook", "webhooks", "webhook_id", ["channel_id", "name"]), ("emoji", "emojis", "emoji_id", ["name", "image"])],
    "outlook": [("event", "events", "event_id", ["subject", "start", "end", "attendees"]), ("rule", "inbox rules", "rule_id", ["display_name", "conditions", "actions"])],
    "calendar": [("acl_rule", "access control rules", "rule_id", ["role", "scope"])],
    "notion": [("comment", "comments", "comment_id", ["page_id", "rich_text"]), ("user", "users", "user_id", [])],
    "confluence": [("attachment", "attachments", "attachment_id", ["page_id", "file"]), ("label", "labels", "label", ["page_id"])],
    "postgres": [("role", "roles", "role_name", ["login", "password"]), ("schema", "schemas", "schema_name", ["owner"]), ("view", "views", "view_name", ["definition"])],
    "mongodb": [("index", "indexes", "index_name", ["database", "collection", "keys"]), ("user", "database users", "username", ["roles"])],
    "s3": [("bucket_policy", "bucket policies", "bucket", ["policy"]), ("lifecycle_rule", "lifecycle rules", "rule_id", ["bucket", "expiration_days"])],
    "kubernetes": [("secret", "secrets", "secret_name", ["namespace", "data"]), ("ingress", "ingresses", "ingress_name", ["namespace", "rules"]), ("cron_job", "cron jobs", "cron_job_name", ["namespace", "schedule", "image"]), ("persistent_volume_claim", "persistent volume claims", "claim_name", ["namespace", "storage"])],
    "docker": [("network", "networks", "network_name", ["driver"])],
    "ec2": [("key_pair", "key pairs", "key_name", ["key_type"]), ("elastic_ip", "elastic IPs", "allocation_id", ["domain"]), ("volume", "EBS volumes", "volume_id", ["size", "availability_zone"])],
    "stripe": [("coupon", "coupons", "coupon_id", ["percent_off", "duration"]), ("payment_method", "payment methods", "payment_method_id", ["customer_id", "type"]), ("webhook_endpoint", "webhook endpoints", "endpoint_id", ["url", "enabled_events"])],
    "shopify": [("collection", "collections", "collection_id", ["title", "rules"]), ("discount_code", "discount codes", "discount_code_id", ["code", "price_rule_id"]), ("location", "locations", "location_id", ["name", "address"])],
    "salesforce": [("contact", "contacts", "contact_id", ["first_name", "last_name", "email"]), ("case", "cases", "case_id", ["subject", "status", "priority"]), ("campaign", "campaigns", "campaign_id", ["name", "type"])],
    "hubspot": [("ticket", "tickets", "ticket_id", ["subject", "content"]), ("note", "notes", "note_id", ["body", "associations"]), ("pipeline", "pipelines", "pipeline_id", ["label", "stages"])],
    "zendesk": [("user", "users", "user_id", ["name", "email", "role"]), ("organization", "organizations", "organization_id", ["name", "domain_names"]), ("article", "help center articles", "article_id", ["title", "body", "section_id"])],
    "intercom": [("contact", "contacts", "contact_id", ["email", "name"]), ("article", "articles", "article_id", ["title", "body"])],
    "pagerduty": [("service", "services", "service_id", ["name", "escalation_policy_id"]), ("escalation_policy", "escalation policies", "escalation_policy_id", ["name", "rules"]), ("maintenance_window", "maintenance windows", "window_id", ["services", "start_time", "end_time"])],
    "datadog": [("downtime", "downtimes", "downtime_id", ["scope", "start", "end"]), ("synthetic_test", "synthetic tests", "public_id", ["name", "request"]), ("slo", "service level objectives", "slo_id", ["name", "thresholds"])],
    "sentry": [("alert_rule", "alert rules", "rule_id", ["project_slug", "conditions"]), ("team", "teams", "team_slug", ["name"])],
    "figma": [("project", "projects", "project_id", ["name"]), ("webhook", "webhooks", "webhook_id", ["event_type", "endpoint"])],
    "asana": [("section", "sections", "section_gid", ["project_gid", "name"]), ("tag", "tags", "tag_gid", ["name", "color"]), ("goal", "goals", "goal_gid", ["name", "due_on"])],
    "trello": [("list", "lists", "list_id", ["name", "board_id"]), ("checklist", "checklists", "checklist_id", ["card_id", "name"]), ("label", "labels", "label_id", ["board_id", "name", "color"])],
    "airtable": [("table", "tables", "table_id", ["base_id", "name", "fields"]), ("webhook", "webhooks", "webhook_id", ["base_id", "notification_url"])],
    "zoom": [("user", "users", "user_id", ["email", "type"]), ("room", "Zoom Rooms", "room_id", ["name", "location_id"])],
    "quickbooks": [("customer", "customers", "customer_id", ["display_name", "primary_email"]), ("payment", "payments", "payment_id", ["customer_ref", "total_amt"]), ("item", "items", "item_id", ["name", "unit_price"]), ("estimate", "estimates", "estimate_id", ["customer_ref", "line"])],
    "vercel": [("domain", "domains", "domain", ["project_id"]), ("team", "teams", "team_id", ["name", "slug"])],
    "cloudflare": [("zone", "zones", "zone_id", ["name", "plan"]), ("firewall_rule", "firewall rules", "rule_id", ["zone_id", "expression", "action"]), ("kv_namespace", "KV namespaces", "namespace_id", ["title"])],
    "youtube": [("comment", "comments", "comment_id", ["video_id", "text"]), ("caption", "caption tracks", "caption_id", ["video_id", "language"])],
    "spotify": [("saved_track", "saved tracks", "track_id", [])],
    "memory": [("observation", "observations", "observation_id", ["entity_name", "contents"])],
    "gmail": [("thread", "threads", "thread_id", ["label_ids"]), ("send_as_alias", "send-as aliases", "send_as_email", ["display_name", "signature"])],
    "drive": [("comment", "comments", "comment_id", ["file_id", "content"]), ("shared_drive", "shared drives", "drive_id", ["name"]), ("revision", "revisions", "revision_id", ["file_id"])],
    "dropbox": [("file_request", "file requests", "file_request_id", ["title", "destination"]), ("team_member", "team members", "member_id", ["email", "role"])],
    "mysql": [("user", "users", "username", ["host", "password"]), ("table", "tables", "table_name", ["columns", "engine"])],
    "twilio": [("phone_number", "phone numbers", "phone_number_sid", ["phone_number", "friendly_name"]), ("messaging_service", "messaging services", "service_sid", ["friendly_name"])],
    "git": [("tag", "tags", "tag_name", ["message", "commit"]), ("remote", "remotes", "remote_name", ["url"]), ("stash", "stashes", "stash_index", ["message"])],
}

LIST = [
    "List {plural} in {service}. Supports pagination with `cursor` and `limit`.",
    "List all {plural} the account can access in {service}, newest first.",
    "Return a paginated list of {plural} from {service}, optionally filtered.",
]
GET = [
    "Get a single {object} from {service} by its ID, with all of its fields.",
    "Retrieve the details of one {object} in {service}.",
    "Fetch a {object} by ID from {service}.",
]
CREATE = [
    "Create a new {object} in {service}.",
    "Create a {object} in {service} and return it.",
    "Add a new {object} to {service}.",
]
UPDATE = [
    "Update the fields of an existing {object} in {service}.",
    "Modify a {object} in {service}; only the given fields change.",
    "Edit an existing {object} in {service}.",
]
DELETE = [
    "Permanently delete a {object} from {service}. This cannot be undone.",
    "Delete a {object} in {service} by ID.",
    "Remove a {object} from {service}.",
]


def schema(parameters, required):
    properties = {}
    for name in parameters:
        kind = "integer" if name in ("limit", "count", "replicas", "per_page", "max_results", "days", "amount", "quantity", "delta", "size", "tail", "tail_lines", "max_count", "max_keys", "page_size", "ttl", "timeout", "duration", "duration_minutes", "radius", "expires_in", "unit_amount", "pull_number", "issue_number") else "string"
        if name in ("private", "public", "force", "full_page", "is_private", "at_period_end"):
            kind = "boolean"
        properties[name] = {"type": kind, "description": name.replace("_", " ").capitalize()}
    return {"type": "object", "properties": properties, "required": list(required)}


def synthetic():
    tools = []
    for prefix, (service, objects, specials) in SERVICES.items():
        objects = objects + MORE_OBJECTS.get(prefix, [])
        for n, (obj, plural, id_param, fields) in enumerate(objects):
            word = obj.replace("_", " ")
            variant = (n + len(prefix)) % 3
            values = {"object": word, "plural": plural, "service": service}
            plural_name = plural.replace(" ", "_")
            for verb, texts, parameters, required in [
                ("list", LIST, ["cursor", "limit", "query"], []),
                ("get", GET, [id_param], [id_param]),
                ("create", CREATE, fields, fields[:1]),
                ("update", UPDATE, [id_param] + fields, [id_param]),
                ("delete", DELETE, [id_param], [id_param]),
            ]:
                name = f"{prefix}_{verb}_{plural_name if verb == 'list' else obj}"
                tools.append({
                    "name": name,
                    "description": texts[variant].format(**values),
                    "inputSchema": schema(parameters, required),
                    "annotations": {"readOnlyHint": verb in ("list", "get"), "destructiveHint": verb == "delete"},
                })
        for special, description, parameters in specials:
            tools.append({
                "name": f"{prefix}_{special}",
                "description": description,
                "inputSchema": schema(parameters, parameters[:1]),
            })
    return tools


def real(path, prefix):
    tools = json.load(open(path))["tools"]
    out = []
    for tool in tools:
        tool = {k: v for k, v in tool.items() if k in ("name", "title", "description", "inputSchema", "outputSchema", "annotations")}
        tool["name"] = f"{prefix}_{tool['name'].replace('-', '_')}"
        out.append(tool)
    return out


def main():
    everything, filesystem = sys.argv[1], sys.argv[2]
    tools = real(everything, "everything") + real(filesystem, "fs") + synthetic()
    names = [t["name"] for t in tools]
    assert len(names) == len(set(names)), "duplicate tool names"
    json.dump({"tools": tools}, sys.stdout, indent=1, sort_keys=True)
    print()
    print(f"{len(tools)} tools", file=sys.stderr)


main()
