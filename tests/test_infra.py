"""Offline checks of infra/ (Bicep), azure.yaml and the post-provision hook.

No Bicep compiler runs here: the files are parsed with tree-sitter-bicep, scanned with checkov
(installed in its own venv, .venv-checkov) and compared with the app's own setting names and
Cosmos DB container definition.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tree_sitter
import tree_sitter_bicep
import yaml

from cosmos_history.adapters.cosmos.client import INDEXING_POLICY, PARTITION_KEY_KIND, PARTITION_KEY_PATHS
from cosmos_history.settings import SETTING_NAMES, CosmosSettings, load_settings

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
CHECKOV_SKIPS = INFRA / "checkov-skips.txt"

#: What the app needs in Azure; each must be set unconditionally by the function app's app settings.
REQUIRED_APP_SETTINGS = {
    "COSMOS_ENDPOINT",
    "COSMOS_DATABASE",
    "COSMOS_CONTAINER",
    "MODEL_PROVIDER",
    "MODEL_API",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "HISTORY_MODE",
    "AZURE_CLIENT_ID",
    "HTTP_AUTH_LEVEL",
}
#: Settings read by the Functions host or the Python worker rather than the app.
REQUIRED_PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_ENABLE_INIT_INDEXING",
}
PLATFORM_SETTING = re.compile(
    r"^(AzureWebJobs\w*|AzureFunctionsJobHost__\w+|APPLICATIONINSIGHTS_\w+|PYTHON_ENABLE_INIT_INDEXING|WEBSITE_\w+)$"
)
#: Settings the app reads that the deployment never sets, and why (infra/README.md says the same).
NOT_SET_IN_AZURE = {
    "COSMOS_KEY": "key auth is off on the account: the app uses its managed identity",
    "AZURE_OPENAI_API_KEY": "key auth is off on the account: the app uses its managed identity",
    "OPENAI_BASE_URL": "the deployment creates its own Azure OpenAI model (MODEL_PROVIDER=azure_openai)",
    "OPENAI_API_KEY": "the deployment creates its own Azure OpenAI model (MODEL_PROVIDER=azure_openai)",
    "OPENAI_MODEL": "the deployment creates its own Azure OpenAI model (MODEL_PROVIDER=azure_openai)",
    "LOCAL_DEV_ALLOW_ANONYMOUS": "local development only: in Azure a caller is a function key or Easy Auth",
}
#: Settings whose value comes from the resources the template creates (or, HTTP_AUTH_LEVEL, from
#: ENABLE_EASY_AUTH); every other setting is an azd variable of its own name.
FROM_THE_DEPLOYMENT = {
    "COSMOS_ENDPOINT",
    "AZURE_CLIENT_ID",
    "MODEL_PROVIDER",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "HTTP_AUTH_LEVEL",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
#: An azd variable of another name than the setting's: the Key Vault secret whose reference the setting is.
AZD_VARIABLE = {"MCP_SERVER_HEADERS": "MCP_SERVER_HEADERS_SECRET_URI"}
#: Never in the Bicep: key-based access, or secret material in outputs and settings.
SECRET_MARKERS = (
    "listkeys(",
    "accountkey=",
    "primarymasterkey",
    "connectionstrings",
    "cosmos_key",
    "azure_openai_api_key",
    "openai_api_key",
)


# --- Parsing helpers -------------------------------------------------------------------------------------------

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


@cache
def parse(path: Path) -> tree_sitter.Node:
    return _PARSER.parse(path.read_bytes()).root_node


def syntax_errors(root: tree_sitter.Node) -> list[str]:
    """Every ERROR or MISSING node, as 'line N: ...' (1-based)."""
    found = []
    for node in walk(root):
        if node.is_error or node.is_missing:
            kind = "missing" if node.is_missing else "unexpected"
            found.append(f"line {node.start_point[0] + 1}: {kind} {node.type} {node.text.decode()[:40]!r}")
    return found


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text(node: tree_sitter.Node) -> str:
    return node.text.decode()


def declarations(root: tree_sitter.Node, kind: str) -> list[tree_sitter.Node]:
    return [child for child in root.named_children if child.type == kind]


def body(declaration: tree_sitter.Node) -> tree_sitter.Node:
    """The object of a resource or module declaration, also behind an `if (...)` condition or a `for` loop."""
    for child in declaration.named_children:
        if child.type == "object":
            return child
        if child.type in ("if_statement", "for_statement"):
            return body(child)
    raise AssertionError(f"no body in {text(declaration)[:60]!r}")


def properties(obj: tree_sitter.Node) -> dict[str, tree_sitter.Node]:
    """Key -> value node of an object literal."""
    result = {}
    for prop in obj.named_children:
        if prop.type != "object_property":
            continue
        key, value = prop.named_children[0], prop.named_children[-1]
        result[literal(key) if key.type == "string" else text(key)] = value
    return result


def member(obj: tree_sitter.Node, dotted: str) -> tree_sitter.Node:
    node = obj
    for key in dotted.split("."):
        node = properties(node)[key]
    return node


def literal(node: tree_sitter.Node) -> Any:
    """The Python value of a literal Bicep expression (no references, no interpolation)."""
    kind = node.type
    if kind == "string":
        parts = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(text(child))
            elif child.type == "escape_sequence":
                parts.append({"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t"}[text(child)])
            else:
                raise ValueError(f"not a literal string: {text(node)}")
        return "".join(parts)
    if kind == "number":
        return int(text(node))
    if kind == "boolean":
        return text(node) == "true"
    if kind == "null":
        return None
    if kind == "array":
        return [literal(child) for child in node.named_children]
    if kind == "object":
        return {key: literal(value) for key, value in properties(node).items()}
    raise ValueError(f"not a literal: {text(node)}")


def resources(path: Path, type_prefix: str) -> list[tree_sitter.Node]:
    """Bodies of the resources in ``path`` whose type (without API version) is ``type_prefix``."""
    found = []
    for declaration in declarations(parse(path), "resource_declaration"):
        resource_type = literal(declaration.named_children[1]).split("@")[0]
        if resource_type == type_prefix:
            found.append(body(declaration))
    return found


def only_resource(path: Path, resource_type: str) -> tree_sitter.Node:
    found = resources(path, resource_type)
    assert len(found) == 1, f"expected one {resource_type} in {path.name}, found {len(found)}"
    return found[0]


def params(path: Path) -> dict[str, bool]:
    """Parameter name -> whether it has a default value."""
    result = {}
    for declaration in declarations(parse(path), "parameter_declaration"):
        name, *rest = declaration.named_children
        result[text(name)] = len(rest) > 1  # type, then the default when there is one
    return result


def param_default(path: Path, name: str) -> tree_sitter.Node:
    declaration = next(
        d for d in declarations(parse(path), "parameter_declaration") if text(d.named_children[0]) == name
    )
    return declaration.named_children[-1]


def outputs(path: Path) -> dict[str, tree_sitter.Node]:
    return {text(d.named_children[0]): d.named_children[-1] for d in declarations(parse(path), "output_declaration")}


def variables(path: Path) -> dict[str, tree_sitter.Node]:
    return {text(d.named_children[0]): d.named_children[-1] for d in declarations(parse(path), "variable_declaration")}


def object_keys(node: tree_sitter.Node, variables: dict[str, tree_sitter.Node], conditional: bool = False):
    """(key, value node, conditional) of the objects an expression can evaluate to.

    Follows variable references, both branches of ternaries and the arguments of union().
    """
    if node.type == "object":
        for key, value in properties(node).items():
            yield key, value, conditional
    elif node.type == "identifier" and text(node) in variables:
        yield from object_keys(variables[text(node)], variables, conditional)
    elif node.type == "ternary_expression":
        for branch in ("consequence", "alternative"):
            yield from object_keys(node.child_by_field_name(branch), variables, True)
    elif node.type == "call_expression" and text(node.child_by_field_name("function")) == "union":
        for argument in node.child_by_field_name("arguments").named_children:
            yield from object_keys(argument, variables, conditional)
    elif node.type == "parenthesized_expression":
        yield from object_keys(node.named_children[0], variables, conditional)
    else:
        raise AssertionError(f"cannot follow {node.type}: {text(node)[:80]!r}")


def app_settings() -> dict[str, tuple[str, bool]]:
    """Name -> (value expression, set only under a condition) of the function app's app settings."""
    path = INFRA / "app" / "function-app.bicep"
    configs = [c for c in resources(path, "Microsoft.Web/sites/config") if literal(member(c, "name")) == "appsettings"]
    assert len(configs) == 1, "expected one Microsoft.Web/sites/config named appsettings"
    settings: dict[str, tuple[str, bool]] = {}
    for key, value, conditional in object_keys(member(configs[0], "properties"), variables(path)):
        assert key not in settings, f"app setting {key} is set twice"
        settings[key] = (text(value), conditional)
    return settings


def module_calls(path: Path) -> list[tuple[str, Path, dict[str, tree_sitter.Node]]]:
    """(symbol, module file, params passed) of every module declaration in ``path``."""
    calls = []
    for declaration in declarations(parse(path), "module_declaration"):
        symbol, source = declaration.named_children[0], declaration.named_children[1]
        passed = properties(body(declaration)).get("params")
        calls.append((text(symbol), path.parent / literal(source), properties(passed) if passed else {}))
    return calls


def identifiers(node: tree_sitter.Node) -> set[str]:
    """The names an expression refers to (parameters, variables, functions)."""
    return {text(n) for n in walk(node) if n.type == "identifier"}


def parameters_file() -> dict[str, Any]:
    return json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]


def azure_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))


def load_hook():
    spec = importlib.util.spec_from_file_location("write_local_settings", INFRA / "hooks" / "write_local_settings.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- 1. Syntax ---------------------------------------------------------------------------------------------------


def test_every_expected_bicep_file_exists():
    names = {path.relative_to(INFRA).as_posix() for path in BICEP_FILES}
    assert {
        "main.bicep",
        "app/identity.bicep",
        "app/monitoring.bicep",
        "app/storage.bicep",
        "app/cosmos.bicep",
        "app/openai.bicep",
        "app/function-app.bicep",
        "app/role-assignments.bicep",
    } <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_file_parses_without_errors(path):
    assert syntax_errors(parse(path)) == [], f"{path.relative_to(REPO)} does not parse"


def test_syntax_check_reports_the_line_of_an_error():
    root = _PARSER.parse(b"param a string\nvar b = {\n  c: 1\n  d 2\n}\n").root_node
    assert any(error.startswith("line 4:") for error in syntax_errors(root))


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_file_avoids_syntax_checkov_cannot_parse(path):
    # tree-sitter accepts multi-line ternaries, but checkov's Bicep parser does not.
    offending = [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.match(r"\s*(\?|:(?!:)|\.\.\.)", line)
    ]
    assert offending == []


def test_no_module_comes_from_a_registry():
    for path in BICEP_FILES:
        for _, source, _ in module_calls(path):
            assert source.is_file(), f"{path.name} calls {source}, which is not a local file"


# --- 2. Security posture (checkov) -------------------------------------------------------------------------------


def checkov_skips() -> dict[str, str]:
    skips = {}
    for line in CHECKOV_SKIPS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        check_id, _, reason = line.partition(":")
        skips[check_id.strip()] = reason.strip()
    return skips


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    if not CHECKOV.is_file():
        message = f"checkov is not installed at {CHECKOV.relative_to(REPO)}: run `make checkov`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "--skip-download", "--output", "json", "--directory", str(INFRA)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode in (0, 1), f"checkov crashed ({result.returncode}): {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    # One framework gives one report; be robust to checkov returning a list of reports.
    reports = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["bicep"]
    return reports[0]


def test_checkov_skip_list_gives_a_reason_for_every_check():
    skips = checkov_skips()
    assert skips, "the skip list is empty or unreadable"
    for check_id, reason in skips.items():
        assert re.fullmatch(r"CKV_AZURE_\d+", check_id), f"not a check id: {check_id!r}"
        assert len(reason) > 20, f"{check_id} needs a reason"


def test_checkov_parses_every_bicep_file(checkov_report):
    assert checkov_report["results"]["parsing_errors"] == []
    assert checkov_report["summary"]["parsing_errors"] == 0


def test_checkov_evaluates_the_resources(checkov_report):
    checked = {
        check["resource"]
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for check in checkov_report["results"][kind]
    }
    assert checkov_report["summary"]["resource_count"] > 0
    assert checkov_report["summary"]["passed"] > 0
    assert {
        "Microsoft.Storage/storageAccounts.storage",
        "Microsoft.DocumentDB/databaseAccounts.account",
        "Microsoft.CognitiveServices/accounts.account",
        "Microsoft.Web/sites.functionApp",
        "Microsoft.Web/serverfarms.plan",
    } <= checked


def test_checkov_finds_no_failure_outside_the_skip_list(checkov_report):
    skips = checkov_skips()
    unexpected = sorted(
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for check in checkov_report["results"]["failed_checks"]
        if check["check_id"] not in skips
    )
    assert unexpected == []


def test_checkov_skip_list_has_no_stale_entry(checkov_report):
    failing = {check["check_id"] for check in checkov_report["results"]["failed_checks"]}
    stale = sorted(set(checkov_skips()) - failing)
    assert stale == [], f"these checks pass now: remove them from {CHECKOV_SKIPS.name}"


def test_checkov_passes_the_key_security_checks(checkov_report):
    passed = {check["check_id"] for check in checkov_report["results"]["passed_checks"]}
    # Storage: TLS 1.2, HTTPS only, no shared key; Cosmos DB: no key metadata writes;
    # Cognitive Services: no local auth; function app: HTTPS only.
    assert {"CKV_AZURE_44", "CKV_AZURE_3", "CKV_AZURE_132", "CKV_AZURE_236", "CKV_AZURE_70"} <= passed


def test_checkov_finds_easy_auth_enabled_on_the_auth_settings(checkov_report):
    # CKV_AZURE_56 reads authsettingsV2's platform.enabled; the redirect and the token store, which checkov
    # has no check for, are the tree-sitter tests of section 3.
    passed = {(check["check_id"], check["resource"]) for check in checkov_report["results"]["passed_checks"]}
    assert ("CKV_AZURE_56", "Microsoft.Web/sites/config.easyAuth") in passed


# --- 3. Consistency with the app ---------------------------------------------------------------------------------


def test_required_settings_are_names_the_app_reads():
    assert set(SETTING_NAMES) >= REQUIRED_APP_SETTINGS


def test_function_app_sets_every_required_setting_unconditionally():
    settings = app_settings()
    missing = sorted(
        name for name in REQUIRED_APP_SETTINGS | REQUIRED_PLATFORM_SETTINGS if settings.get(name, ("", True))[1]
    )
    assert missing == []


def test_function_app_sets_only_known_setting_names():
    unknown = sorted(name for name in app_settings() if name not in SETTING_NAMES and not PLATFORM_SETTING.match(name))
    assert unknown == []


def test_function_app_sets_no_key_setting():
    settings = app_settings()
    assert {"COSMOS_KEY", "AZURE_OPENAI_API_KEY", "OPENAI_API_KEY"}.isdisjoint(settings)


def test_function_app_leaves_runtime_settings_to_flex_consumption():
    # Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION app settings.
    assert [name for name in app_settings() if name.startswith("FUNCTIONS_")] == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODEL_PROVIDER", "'azure_openai'"),
        ("MODEL_API", "modelApi"),
        ("ENABLE_SENSITIVE_DATA", "string(enableSensitiveData)"),
        ("AzureFunctionsJobHost__logging__logLevel__Function", "hostLogLevels[logLevel]"),
        (
            "MCP_SERVER_HEADERS",
            "empty(mcpServerHeadersSecretUri) ? '' : '@Microsoft.KeyVault(SecretUri=${mcpServerHeadersSecretUri})'",
        ),
        ("PYTHON_ENABLE_INIT_INDEXING", "'1'"),
        ("AzureWebJobsStorage__credential", "'managedidentity'"),
        ("AzureWebJobsStorage__clientId", "identityClientId"),
        ("AZURE_CLIENT_ID", "identityClientId"),
        ("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "'ClientId=${identityClientId};Authorization=AAD'"),
        ("HTTP_AUTH_LEVEL", "enableEasyAuth ? 'anonymous' : 'function'"),
    ],
)
def test_app_setting_has_expected_value(name, value):
    assert app_settings()[name][0] == value


def test_every_setting_the_app_reads_is_set_in_azure_or_left_out_for_a_reason():
    set_in_azure = {name for name in app_settings() if name in SETTING_NAMES}
    assert set_in_azure.isdisjoint(NOT_SET_IN_AZURE)
    assert sorted(set(SETTING_NAMES) - set_in_azure - set(NOT_SET_IN_AZURE)) == []
    readme = (INFRA / "README.md").read_text(encoding="utf-8")
    assert [name for name in NOT_SET_IN_AZURE if f"`{name}`" not in readme] == [], "infra/README.md says which"


def test_every_app_setting_can_be_set_through_azd():
    """Setting -> the function app module's parameter -> main.bicep's parameter -> its azd variable."""
    function_app = INFRA / "app" / "function-app.bicep"
    module_params = set(params(function_app))
    passed = next(p for _, module, p in module_calls(INFRA / "main.bicep") if module == function_app)
    main_params = set(params(INFRA / "main.bicep"))
    azd_values = {name: entry["value"] for name, entry in parameters_file().items()}
    unreachable = []
    for name, (value, _) in app_settings().items():
        if name not in SETTING_NAMES or name in FROM_THE_DEPLOYMENT:
            continue
        source = _PARSER.parse(value.encode()).root_node
        feeding = {
            main_param
            for module_param in identifiers(source) & module_params
            for main_param in identifiers(passed[module_param]) & main_params
        }
        variable = "${" + AZD_VARIABLE.get(name, name)
        if not any(str(azd_values.get(main_param, "")).startswith(variable) for main_param in feeding):
            unreachable.append(f"{name} (from {sorted(feeding)})")
    assert unreachable == []


def test_the_azd_variable_of_a_setting_names_it_exactly():
    # A value read from the azd environment under another name would be set by the wrong `azd env set`.
    references = [re.fullmatch(r"\$\{(\w+)(=[^}]*)?\}", str(entry["value"])) for entry in parameters_file().values()]
    variables = {match.group(1) for match in references if match}
    assert {
        "MAX_INPUT_TOKENS",
        "HISTORY_COMPACTION",
        "TURN_TIMEOUT_SECONDS",
        "LOG_LEVEL",
        "MCP_SERVER_URL",
    } <= variables
    assert "MCP_SERVER_HEADERS_SECRET_URI" in variables and "MCP_SERVER_HEADERS" not in variables


def test_every_log_level_the_app_accepts_has_a_host_level():
    from cosmos_history.settings import LOG_LEVELS

    host_levels = literal(variables(INFRA / "app" / "function-app.bicep")["hostLogLevels"])
    assert sorted(host_levels) == sorted(level.upper() for level in LOG_LEVELS)
    assert set(host_levels.values()) == {"Debug", "Information", "Warning", "Error"}


def test_key_vault_references_resolve_with_the_apps_identity():
    site = only_resource(INFRA / "app" / "function-app.bicep", "Microsoft.Web/sites")
    assert text(member(site, "properties.keyVaultReferenceIdentity")) == "identityId"


def test_optional_settings_are_set_only_when_configured():
    settings = app_settings()
    assert settings["SESSION_TTL_SECONDS"] == ("string(sessionTtlSeconds)", True)
    assert settings["DEFAULT_AGENT"] == ("defaultAgent", True)
    condition = text(variables(INFRA / "app" / "function-app.bicep")["ttlSettings"].child_by_field_name("condition"))
    assert condition == "sessionTtlSeconds > 0"


def test_container_partition_key_is_the_apps_hierarchical_key():
    container = only_resource(
        INFRA / "app" / "cosmos.bicep", "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"
    )
    assert literal(member(container, "properties.resource.partitionKey")) == {
        "paths": PARTITION_KEY_PATHS,
        "kind": PARTITION_KEY_KIND,
        "version": 2,
    }


def test_the_default_container_name_is_the_apps_so_an_old_layout_container_is_never_reused():
    assert literal(param_default(INFRA / "main.bicep", "cosmosContainerName")) == CosmosSettings.container


def test_container_indexing_policy_matches_the_app():
    container = only_resource(
        INFRA / "app" / "cosmos.bicep", "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"
    )
    assert literal(member(container, "properties.resource.indexingPolicy")) == INDEXING_POLICY


def test_container_lets_items_carry_their_own_ttl():
    container = only_resource(
        INFRA / "app" / "cosmos.bicep", "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"
    )
    assert literal(member(container, "properties.resource.defaultTtl")) == -1


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_file_contains_no_secret_material(path):
    source = path.read_text(encoding="utf-8").lower()
    assert [marker for marker in SECRET_MARKERS if marker in source] == []
    assert "@secure()" not in source


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_outputs_call_no_list_function(path):
    # list*() functions return keys and secrets; outputs end up in deployment history and the azd .env.
    leaking = [name for name, value in outputs(path).items() if re.search(r"\blist\w*\(", text(value))]
    assert leaking == []


@pytest.mark.parametrize(
    ("module", "resource_type", "dotted", "expected"),
    [
        ("storage", "Microsoft.Storage/storageAccounts", "properties.allowSharedKeyAccess", False),
        ("storage", "Microsoft.Storage/storageAccounts", "properties.minimumTlsVersion", "TLS1_2"),
        ("storage", "Microsoft.Storage/storageAccounts", "properties.allowBlobPublicAccess", False),
        ("cosmos", "Microsoft.DocumentDB/databaseAccounts", "properties.disableLocalAuth", True),
        ("cosmos", "Microsoft.DocumentDB/databaseAccounts", "properties.minimalTlsVersion", "Tls12"),
        ("openai", "Microsoft.CognitiveServices/accounts", "properties.disableLocalAuth", True),
        ("monitoring", "Microsoft.Insights/components", "properties.DisableLocalAuth", True),
        ("function-app", "Microsoft.Web/serverfarms", "sku", {"name": "FC1", "tier": "FlexConsumption"}),
        ("function-app", "Microsoft.Web/sites", "properties.httpsOnly", True),
        ("function-app", "Microsoft.Web/sites", "properties.functionAppConfig.runtime.name", "python"),
        (
            "function-app",
            "Microsoft.Web/sites",
            "properties.functionAppConfig.deployment.storage.authentication.type",
            "UserAssignedIdentity",
        ),
    ],
)
def test_resource_property_is_set(module, resource_type, dotted, expected):
    resource = only_resource(INFRA / "app" / f"{module}.bicep", resource_type)
    assert literal(member(resource, dotted)) == expected


def test_function_app_runs_the_python_version_the_project_tests_on():
    function_app = INFRA / "app" / "function-app.bicep"
    version = member(only_resource(function_app, "Microsoft.Web/sites"), "properties.functionAppConfig.runtime.version")
    assert text(version) == "pythonVersion"
    assert literal(param_default(function_app, "pythonVersion")) == "3.11"


def test_function_app_is_tagged_as_the_azd_service():
    site = only_resource(INFRA / "app" / "function-app.bicep", "Microsoft.Web/sites")
    assert text(member(site, "tags")) == "union(tags, { 'azd-service-name': 'api' })"


def easy_auth() -> tree_sitter.Node:
    configs = resources(INFRA / "app" / "function-app.bicep", "Microsoft.Web/sites/config")
    return next(c for c in configs if literal(member(c, "name")) == "authsettingsV2")


def test_easy_auth_redirects_a_browser_without_a_session_to_the_entra_id_sign_in():
    assert literal(member(easy_auth(), "properties.globalValidation")) == {
        "requireAuthentication": True,
        "unauthenticatedClientAction": "RedirectToLoginPage",
        "redirectToProvider": "azureactivedirectory",
    }


def test_easy_auth_keeps_the_signed_in_session_in_the_token_store():
    assert literal(member(easy_auth(), "properties.login.tokenStore.enabled")) is True
    assert literal(member(easy_auth(), "properties.httpSettings.requireHttps")) is True


def test_easy_auth_accepts_bearer_tokens_issued_for_the_app_registration():
    aad = member(easy_auth(), "properties.identityProviders.azureActiveDirectory")
    assert text(member(aad, "registration.clientId")) == "easyAuthClientId"
    assert text(member(aad, "validation.allowedAudiences")).split() == [
        "[",
        "easyAuthClientId",
        "'api://${easyAuthClientId}'",
        "]",
    ]
    assert "easyAuthTenantId}/v2.0" in text(member(aad, "registration.openIdIssuer"))


def test_easy_auth_stores_no_client_secret():
    # The sign-in uses the ID token flow: no clientSecretSettingName, so no secret to keep.
    assert "clientSecret" not in text(easy_auth())


def test_main_bicep_outputs_the_sign_in_redirect_uri_to_register():
    uri = text(outputs(INFRA / "main.bicep")["EASY_AUTH_REDIRECT_URI"])
    assert uri == "'https://${functionApp.outputs.defaultHostName}/.auth/login/aad/callback'"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_top_level_resource_is_tagged(path):
    untagged = []
    for declaration in declarations(parse(path), "resource_declaration"):
        if any(child.type == "existing" or text(child) == "existing" for child in declaration.children):
            continue
        resource = properties(body(declaration))
        if "parent" in resource or "scope" in resource:
            continue  # child and extension resources take no tags of their own
        if resource.get("tags") is None or "tags" not in text(resource["tags"]):
            untagged.append(text(declaration.named_children[0]))
    assert untagged == []


def test_cosmos_data_role_goes_to_the_identity_and_the_developer():
    path = INFRA / "app" / "role-assignments.bicep"
    assignments = resources(path, "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")
    principals = sorted(text(member(a, "properties.principalId")) for a in assignments)
    assert principals == ["developerPrincipalId", "identityPrincipalId"]
    assert text(variables(path)["cosmosDataContributor"]) == "'00000000-0000-0000-0000-000000000002'"


def test_openai_user_role_goes_to_the_identity_and_the_developer():
    path = INFRA / "app" / "role-assignments.bicep"
    assert text(variables(path)["cognitiveServicesOpenAiUser"]) == "'5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'"
    granted = [
        text(member(a, "properties.principalId"))
        for a in resources(path, "Microsoft.Authorization/roleAssignments")
        if "cognitiveServicesOpenAiUser" in text(member(a, "properties.roleDefinitionId"))
    ]
    assert sorted(granted) == ["developerPrincipalId", "identityPrincipalId"]


# --- 4. azure.yaml, parameters and module calls agree -----------------------------------------------------------


MODULE_CALLS = [
    pytest.param(caller, symbol, module, id=f"{caller.name}:{symbol}")
    for caller in BICEP_FILES
    for symbol, module, _ in module_calls(caller)
]


def test_parameters_file_declares_only_main_bicep_params():
    assert sorted(set(parameters_file()) - set(params(INFRA / "main.bicep"))) == []


def test_parameters_file_gives_every_main_bicep_param_without_default():
    required = {name for name, has_default in params(INFRA / "main.bicep").items() if not has_default}
    assert sorted(required - set(parameters_file())) == []


def test_parameters_file_reads_the_azd_environment():
    values = {name: entry["value"] for name, entry in parameters_file().items()}
    assert values["environmentName"] == "${AZURE_ENV_NAME}"
    assert values["location"] == "${AZURE_LOCATION}"
    assert values["principalId"] == "${AZURE_PRINCIPAL_ID}"


@pytest.mark.parametrize(("caller", "symbol", "module"), MODULE_CALLS)
def test_module_call_passes_only_declared_params(caller, symbol, module):
    passed = next(p for s, _, p in module_calls(caller) if s == symbol)
    assert sorted(set(passed) - set(params(module))) == []


@pytest.mark.parametrize(("caller", "symbol", "module"), MODULE_CALLS)
def test_module_call_passes_every_param_without_default(caller, symbol, module):
    passed = next(p for s, _, p in module_calls(caller) if s == symbol)
    required = {name for name, has_default in params(module).items() if not has_default}
    assert sorted(required - set(passed)) == []


def test_main_bicep_targets_the_subscription():
    assignment = declarations(parse(INFRA / "main.bicep"), "target_scope_assignment")
    assert [literal(a.named_children[0]) for a in assignment] == ["subscription"]


def test_azure_yaml_points_at_main_bicep():
    infra = azure_yaml()["infra"]
    assert (REPO / infra["path"] / f"{infra['module']}.bicep") == INFRA / "main.bicep"


def test_azure_yaml_deploys_the_repo_as_a_python_function_app():
    service = azure_yaml()["services"]["api"]
    assert {k: service[k] for k in ("project", "language", "host")} == {
        "project": ".",
        "language": "python",
        "host": "function",
    }
    # What is zipped is the folder the prepackage hook builds (tests/test_package.py).
    assert set(service) == {"project", "language", "host", "dist", "hooks"}


def test_azure_yaml_runs_the_hook_after_provisioning():
    hook = azure_yaml()["hooks"]["postprovision"]
    for platform in ("posix", "windows"):
        assert hook[platform]["run"].endswith("infra/hooks/write_local_settings.py")


def test_main_bicep_outputs_what_the_hook_and_azd_read():
    names = set(outputs(INFRA / "main.bicep"))
    hook = load_hook()
    expected = {
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_URL",
        "HISTORY_MODE",
        "SESSION_TTL_SECONDS",
        *hook.COPIED,
    }
    assert sorted(expected - names) == []


# --- Post-provision hook -------------------------------------------------------------------------------------------

AZD_VALUES = {
    "COSMOS_ENDPOINT": "https://cosmos-abc.documents.azure.com:443/",
    "COSMOS_DATABASE": "conversations",
    "COSMOS_CONTAINER": "sessions",
    "AZURE_OPENAI_ENDPOINT": "https://oai-abc.openai.azure.com/",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-4o-mini",
    "HISTORY_MODE": "local",
    "SESSION_TTL_SECONDS": "0",
    "AZURE_MANAGED_IDENTITY_CLIENT_ID": "00000000-0000-0000-0000-00000000000a",
}


def test_hook_writes_the_values_for_a_local_run_against_azure():
    values = load_hook().build_local_settings(AZD_VALUES)["Values"]
    assert values == {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "MODEL_PROVIDER": "azure_openai",
        "MODEL_API": "responses",
        "HTTP_AUTH_LEVEL": "function",
        "COSMOS_ENDPOINT": AZD_VALUES["COSMOS_ENDPOINT"],
        "COSMOS_DATABASE": "conversations",
        "COSMOS_CONTAINER": "sessions",
        "AZURE_OPENAI_ENDPOINT": AZD_VALUES["AZURE_OPENAI_ENDPOINT"],
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o-mini",
        "HISTORY_MODE": "local",
    }


def test_hook_writes_only_names_the_app_reads():
    values = load_hook().build_local_settings({**AZD_VALUES, "SESSION_TTL_SECONDS": "3600"})["Values"]
    assert sorted(set(values) - set(SETTING_NAMES) - {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}) == []
    assert values["SESSION_TTL_SECONDS"] == "3600"


def azd_variables_of_app_settings() -> set[str]:
    """The app settings that main.parameters.json reads from azd variables of their own name."""
    references = (re.fullmatch(r"\$\{(\w+)(=[^}]*)?\}", str(e["value"])) for e in parameters_file().values())
    return {match.group(1) for match in references if match} & set(SETTING_NAMES)


def test_hook_copies_every_app_setting_that_is_an_azd_variable():
    hook = load_hook()
    handled = {*hook.COPIED, *hook.COPIED_WHEN_SET, "HISTORY_MODE", "SESSION_TTL_SECONDS"}
    assert sorted(azd_variables_of_app_settings() - handled) == []
    values = hook.build_local_settings({**AZD_VALUES, "MAX_INPUT_TOKENS": "16000", "MODEL_API": "chat"})["Values"]
    assert values["MAX_INPUT_TOKENS"] == "16000" and values["MODEL_API"] == "chat"
    assert "LOG_LEVEL" not in values, "an unset variable leaves the app's default"


def test_hook_output_is_accepted_by_the_app_settings_loader():
    values = load_hook().build_local_settings({**AZD_VALUES, "SESSION_TTL_SECONDS": "3600"})["Values"]
    settings = load_settings(values)
    assert settings.model.provider == "azure_openai"
    assert settings.cosmos.key is None
    assert settings.session_ttl_seconds == 3600


def test_hook_keeps_other_values_and_drops_keys():
    existing = {
        "Host": {"LocalHttpPort": 7072},
        "Values": {"DEFAULT_AGENT": "support", "COSMOS_KEY": "emulator", "AZURE_CLIENT_ID": "x"},
    }
    settings = load_hook().build_local_settings(AZD_VALUES, existing)
    assert settings["Host"] == {"LocalHttpPort": 7072}
    assert settings["Values"]["DEFAULT_AGENT"] == "support"
    assert {"COSMOS_KEY", "AZURE_CLIENT_ID"}.isdisjoint(settings["Values"])


def test_hook_refuses_an_environment_that_was_not_provisioned():
    hook = load_hook()
    with pytest.raises(hook.HookError, match="COSMOS_ENDPOINT"):
        hook.build_local_settings({})


def test_hook_command_line_writes_the_file(tmp_path):
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(AZD_VALUES), encoding="utf-8")
    output = tmp_path / "local.settings.json"
    assert load_hook().main(["--values-json", str(values_file), "--output", str(output)]) == 0
    written = json.loads(output.read_text(encoding="utf-8"))
    assert written["IsEncrypted"] is False
    assert written["Values"]["COSMOS_ENDPOINT"] == AZD_VALUES["COSMOS_ENDPOINT"]
