"""IAM for tests: template.yaml's own policies, a small evaluator, and a recorder that maps the AWS
calls the real handlers make (botocore event hooks) to the actions and resource ARNs AWS checks.

The evaluator follows IAM's documented rules closely enough for least-privilege checks: an explicit
Deny wins, then any Allow; `*` and `?` wildcards (actions case-insensitive, resources
case-sensitive); `Condition` with the String/Arn/Bool/Numeric operators, `IfExists`, and the
`ForAllValues:`/`ForAnyValue:` set qualifiers. Anything it does not know raises, so a new call or
a new policy construct fails the tests loudly instead of passing by accident.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from segpipe_local.template import Tag

ContextValue = str | list[str]

# --- template intrinsics ---------------------------------------------------------------------------


def evaluate(value: Any, refs: Mapping[str, str]) -> Any:
    """Resolve `!Ref`, `!GetAtt`, `!Sub`, `!Join`, `!Select` and `!Split` with `refs` (logical id,
    `Logical.Attribute` or pseudo parameter -> value); raises KeyError for anything unknown."""
    if isinstance(value, Tag):
        return _intrinsic(value.name, value.value, refs)
    if isinstance(value, dict):
        if len(value) == 1:
            (key,) = value
            if key == "Ref" or key.startswith("Fn::"):
                return _intrinsic(key.removeprefix("Fn::"), value[key], refs)
        return {key: evaluate(item, refs) for key, item in value.items()}
    if isinstance(value, list):
        return [evaluate(item, refs) for item in value]
    return value


def _lookup(name: str, refs: Mapping[str, str]) -> str:
    if name not in refs:
        raise KeyError(f"no test value for {name!r}: add it to the refs")
    return refs[name]


def _intrinsic(name: str, arg: Any, refs: Mapping[str, str]) -> Any:
    if name == "Ref":
        return _lookup(arg, refs)
    if name == "GetAtt":
        return _lookup(arg if isinstance(arg, str) else ".".join(arg), refs)
    if name == "Sub":
        text, local = (arg, {}) if isinstance(arg, str) else (arg[0], evaluate(arg[1], refs))
        scope = {**refs, **local}

        def substitute(match: re.Match[str]) -> str:
            inner = match[1]
            return "${" + inner[1:] + "}" if inner.startswith("!") else _lookup(inner, scope)

        return re.sub(r"\$\{([^}]+)\}", substitute, text)
    if name == "Join":
        separator, items = arg
        return str(separator).join(str(item) for item in evaluate(items, refs))
    if name == "Select":
        index, items = evaluate(arg, refs)
        return items[int(index)]
    if name == "Split":
        separator, text = evaluate(arg, refs)
        return str(text).split(separator)
    raise KeyError(f"intrinsic !{name} is not supported by the test evaluator")


# --- policies --------------------------------------------------------------------------------------


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sid: str = ""

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Statement:
        known = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
        if unknown := set(raw) - known:
            raise ValueError(f"statement element(s) {sorted(unknown)} not supported")
        return cls(
            effect=raw["Effect"],
            actions=_tuple(raw.get("Action")),
            not_actions=_tuple(raw.get("NotAction")),
            resources=_tuple(raw.get("Resource")),
            not_resources=_tuple(raw.get("NotResource")),
            condition=raw.get("Condition") or {},
            sid=raw.get("Sid", ""),
        )


#: SAM's CRUD policy templates as SAM expands them (aws-sam-translator's policy_templates.json), so that
#: a template that still uses them is judged on what it really grants: the actions, on the resource
#: and on what lies under it (the bucket's objects, the table's indexes).
_CRUD_TEMPLATES: dict[str, tuple[tuple[str, ...], str]] = {
    "S3CrudPolicy": (
        (
            "s3:GetObject",
            "s3:ListBucket",
            "s3:GetBucketLocation",
            "s3:GetObjectVersion",
            "s3:PutObject",
            "s3:PutObjectAcl",
            "s3:GetLifecycleConfiguration",
            "s3:PutLifecycleConfiguration",
            "s3:DeleteObject",
        ),
        "*",
    ),
    "DynamoDBCrudPolicy": (
        (
            "dynamodb:GetItem",
            "dynamodb:DeleteItem",
            "dynamodb:PutItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
            "dynamodb:ConditionCheckItem",
        ),
        "index/*",
    ),
}


def _sam_policy_template(name: str, args: Mapping[str, Any], refs: Mapping[str, str]) -> list[Statement]:
    partition, region, account = refs["AWS::Partition"], refs["AWS::Region"], refs["AWS::AccountId"]
    if name in _CRUD_TEMPLATES:
        actions, below = _CRUD_TEMPLATES[name]
        resource = (
            f"arn:{partition}:s3:::{args['BucketName']}"
            if name == "S3CrudPolicy"
            else f"arn:{partition}:dynamodb:{region}:{account}:table/{args['TableName']}"
        )
        return [Statement("Allow", actions=actions, resources=(resource, f"{resource}/{below}"))]
    if name == "SQSSendMessagePolicy":
        queue = f"arn:{partition}:sqs:{region}:{account}:{args['QueueName']}"
        return [Statement("Allow", actions=("sqs:SendMessage*",), resources=(queue,))]
    raise ValueError(f"SAM policy template {name} is not known to the test evaluator")


def function_statements(
    template: Mapping[str, Any], function: str, refs: Mapping[str, str]
) -> list[Statement]:
    """The statements of an `AWS::Serverless::Function`'s `Policies` (inline statements and the SAM
    policy templates above; managed policy names are refused: the test cannot see inside them)."""
    props = template["Resources"][function]["Properties"]
    statements: list[Statement] = []
    for entry in _tuple_or_list(props.get("Policies")):
        entry = evaluate(entry, refs)
        if isinstance(entry, str):
            raise ValueError(f"{function}: managed policy {entry!r} cannot be checked; use inline statements")
        if "Statement" in entry:
            statements += [Statement.parse(raw) for raw in entry["Statement"]]
            continue
        ((name, args),) = entry.items()
        statements += _sam_policy_template(name, args, refs)
    return statements


def role_statements(template: Mapping[str, Any], role: str, refs: Mapping[str, str]) -> list[Statement]:
    """The inline statements of an `AWS::IAM::Role` (managed policies are refused, as above)."""
    props = template["Resources"][role]["Properties"]
    if props.get("ManagedPolicyArns"):
        raise ValueError(f"{role}: managed policies cannot be checked; use inline statements")
    statements: list[Statement] = []
    for policy in props.get("Policies", []):
        document = evaluate(policy["PolicyDocument"], refs)
        statements += [Statement.parse(raw) for raw in document["Statement"]]
    return statements


def _tuple_or_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# --- evaluation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """One authorisation AWS makes for a call: an action on a resource, with its request context."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = f" {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{extra}"


def wildcard(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM's `*` (any run of characters, `/` included) and `?` (one character)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=0 if case else re.IGNORECASE) is not None


def _matches_action(patterns: Sequence[str], action: str) -> bool:
    return any(wildcard(pattern, action, case=False) for pattern in patterns)


def _matches_resource(patterns: Sequence[str], resource: str) -> bool:
    return any(wildcard(pattern, resource) for pattern in patterns)


def _compare(operator: str, actual: str, expected: str) -> bool:
    if operator in {"StringEquals", "ArnEquals"}:
        return actual == expected
    if operator == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if operator in {"StringLike", "ArnLike"}:
        return wildcard(expected, actual)
    if operator == "Bool":
        return actual.lower() == str(expected).lower()
    if operator.startswith("Numeric"):
        left, right = float(actual), float(expected)
        return {
            "NumericEquals": left == right,
            "NumericLessThan": left < right,
            "NumericLessThanEquals": left <= right,
            "NumericGreaterThan": left > right,
            "NumericGreaterThanEquals": left >= right,
        }[operator]
    raise ValueError(f"condition operator {operator} is not supported by the test evaluator")


def _condition_holds(raw_operator: str, key: str, expected: Any, context: Mapping[str, ContextValue]) -> bool:
    qualifier, _, operator = raw_operator.rpartition(":")
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    negated = operator in {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
    base = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike"}.get(operator, operator)
    base = {"ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike"}.get(base, base)
    lowered = {name.lower(): value for name, value in context.items()}
    expected_values = [str(item) for item in expected] if isinstance(expected, list) else [str(expected)]
    if key.lower() not in lowered:
        # A missing key: ForAllValues holds vacuously; negated operators and IfExists hold.
        return qualifier == "ForAllValues" or negated or if_exists
    present = lowered[key.lower()]
    actual = present if isinstance(present, list) else [present]

    def one(value: str) -> bool:
        hit = any(_compare(base, value, candidate) for candidate in expected_values)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(value) for value in actual)
    if qualifier in {"ForAnyValue", ""}:
        return any(one(value) for value in actual)
    raise ValueError(f"condition qualifier {qualifier} is not supported")


def _applies(statement: Statement, access: Access) -> bool:
    if statement.actions and not _matches_action(statement.actions, access.action):
        return False
    if statement.not_actions and _matches_action(statement.not_actions, access.action):
        return False
    if statement.resources and not _matches_resource(statement.resources, access.resource):
        return False
    if statement.not_resources and _matches_resource(statement.not_resources, access.resource):
        return False
    return all(
        _condition_holds(operator, key, expected, access.context)
        for operator, block in statement.condition.items()
        for key, expected in block.items()
    )


def decision(statements: Sequence[Statement], access: Access) -> str:
    """`"allowed"`, `"denied"` (an explicit Deny applies) or `"implicit"` (no Allow applies)."""
    applicable = [statement for statement in statements if _applies(statement, access)]
    if any(statement.effect == "Deny" for statement in applicable):
        return "denied"
    return "allowed" if any(statement.effect == "Allow" for statement in applicable) else "implicit"


def allowed(statements: Sequence[Statement], access: Access) -> bool:
    return decision(statements, access) == "allowed"


def granted_actions(statements: Sequence[Statement], catalogue: Sequence[str]) -> list[str]:
    """The actions of `catalogue` that any Allow statement names (wildcards expanded)."""
    found = []
    for action in catalogue:
        for statement in statements:
            if statement.effect != "Allow":
                continue
            named = _matches_action(statement.actions, action) if statement.actions else False
            if statement.not_actions and not _matches_action(statement.not_actions, action):
                named = True
            if named:
                found.append(action)
                break
    return found


#: What least privilege rules out for every segpipe principal: deleting, scanning, bucket
#: lifecycle and ACLs (checked against the policy's action patterns, wildcards expanded).
FORBIDDEN_ACTIONS = (
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:PutLifecycleConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:PutBucketAcl",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:GetBucketAcl",
    "s3:GetObjectAcl",
    "s3:PutBucketPolicy",
    "dynamodb:Scan",
    "dynamodb:DeleteItem",
    "dynamodb:DeleteTable",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLDelete",
    "dynamodb:PartiQLSelect",
    "sagemaker:DeleteTrainingJob",
    "ecr:DeleteRepository",
    "ecr:BatchDeleteImage",
    "ecr:PutImage",
)


# --- from API calls to IAM accesses ----------------------------------------------------------------


@dataclass
class Call:
    """One AWS API call made while a handler ran."""

    function: str
    service: str
    operation: str
    params: dict[str, Any]
    presign: bool = False
    status: int | None = None
    error: str | None = None


class UnmappedCall(ValueError):
    pass


@dataclass(frozen=True)
class Arns:
    region: str
    account: str
    partition: str = "aws"

    def bucket(self, name: str) -> str:
        return f"arn:{self.partition}:s3:::{name}"

    def table(self, name: str, index: str | None = None) -> str:
        arn = f"arn:{self.partition}:dynamodb:{self.region}:{self.account}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    def training_job(self, name: str) -> str:
        # SageMaker writes resource names in ARNs in lower case.
        return f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:training-job/{name.lower()}"

    def processing_job(self, name: str) -> str:
        return f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:processing-job/{name.lower()}"


_MISSING_OBJECT = {"NoSuchKey", "404", "NotFound"}
_S3_WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
_DYNAMO_SIMPLE = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable"}
_TRANSACT = {
    "ConditionCheck": "ConditionCheckItem",
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
}


def _s3_accesses(call: Call, arns: Arns, tags: Mapping[str, dict[str, str]]) -> list[Access]:
    params, op = call.params, call.operation
    bucket = arns.bucket(params["Bucket"])
    if op in {"GetObject", "HeadObject"}:
        action = "s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject"
        found = [Access(action, f"{bucket}/{params['Key']}")]
        if call.error in _MISSING_OBJECT or call.status == 404:
            # S3 answers 404 for a missing key only to callers with s3:ListBucket on the bucket
            # (403 otherwise); no s3:prefix is part of that check.
            found.append(Access("s3:ListBucket", bucket))
        return found
    if op in _S3_WRITES:
        found = [Access("s3:PutObject", f"{bucket}/{params['Key']}")]
        if params.get("Tagging"):
            found.append(Access("s3:PutObjectTagging", f"{bucket}/{params['Key']}"))
        if params.get("ACL"):
            found.append(Access("s3:PutObjectAcl", f"{bucket}/{params['Key']}"))
        return found
    if op in {"ListObjectsV2", "ListObjects"}:
        context: dict[str, ContextValue] = {}
        if "Prefix" in params:
            context["s3:prefix"] = params["Prefix"]
        if "Delimiter" in params:
            context["s3:delimiter"] = params["Delimiter"]
        return [Access("s3:ListBucket", bucket, context)]
    if op == "AbortMultipartUpload":
        return [Access("s3:AbortMultipartUpload", f"{bucket}/{params['Key']}")]
    if op in {"DeleteObject", "DeleteObjects"}:
        return [Access("s3:DeleteObject", f"{bucket}/{params.get('Key', '*')}")]
    raise UnmappedCall(f"s3 {op}")


def _dynamodb_accesses(call: Call, arns: Arns, tags: Mapping[str, dict[str, str]]) -> list[Access]:
    params, op = call.params, call.operation
    if op in _DYNAMO_SIMPLE:
        return [Access(f"dynamodb:{op}", arns.table(params["TableName"], params.get("IndexName")))]
    if op in {"BatchGetItem", "BatchWriteItem"}:
        return [Access(f"dynamodb:{op}", arns.table(table)) for table in params["RequestItems"]]
    if op == "TransactWriteItems":
        found = []
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            found.append(Access(f"dynamodb:{_TRANSACT[kind]}", arns.table(body["TableName"])))
        return found
    if op == "TransactGetItems":
        return [
            Access("dynamodb:GetItem", arns.table(item["Get"]["TableName"]))
            for item in params["TransactItems"]
        ]
    raise UnmappedCall(f"dynamodb {op}")


def _resource_tags(name: str, tags: Mapping[str, dict[str, str]]) -> dict[str, ContextValue]:
    return {f"aws:ResourceTag/{key}": value for key, value in tags.get(name.lower(), {}).items()}


def _sagemaker_accesses(call: Call, arns: Arns, tags: Mapping[str, dict[str, str]]) -> list[Access]:
    params, op = call.params, call.operation
    if op == "CreateTrainingJob":
        job = arns.training_job(params["TrainingJobName"])
        request_tags = {tag["Key"]: tag["Value"] for tag in params.get("Tags", [])}
        context: dict[str, ContextValue] = {f"aws:RequestTag/{k}": v for k, v in request_tags.items()}
        context["sagemaker:InstanceTypes"] = [params["ResourceConfig"]["InstanceType"]]
        context["sagemaker:MaxRuntimeInSeconds"] = str(params["StoppingCondition"]["MaxRuntimeInSeconds"])
        found = [Access("sagemaker:CreateTrainingJob", job, context)]
        if request_tags:
            context["aws:TagKeys"] = sorted(request_tags)
            found.append(Access("sagemaker:AddTags", job, {**context}))
        found.append(
            Access("iam:PassRole", params["RoleArn"], {"iam:PassedToService": "sagemaker.amazonaws.com"})
        )
        return found
    if op in {"DescribeTrainingJob", "StopTrainingJob"}:
        name = params["TrainingJobName"]
        return [Access(f"sagemaker:{op}", arns.training_job(name), _resource_tags(name, tags))]
    if op == "CreateProcessingJob":
        return _create_processing_accesses(params, arns)
    if op in {"DescribeProcessingJob", "StopProcessingJob"}:
        name = params["ProcessingJobName"]
        return [Access(f"sagemaker:{op}", arns.processing_job(name), _resource_tags(name, tags))]
    if op in {"ListTrainingJobs", "ListProcessingJobs", "Search"}:
        return [Access(f"sagemaker:{op}", "*")]
    raise UnmappedCall(f"sagemaker {op}")


def _create_processing_accesses(params: Mapping[str, Any], arns: Arns) -> list[Access]:
    """CreateProcessingJob's authorisation: the job with its request tags (as AddTags too), the
    instance types and run time as condition keys, and passing the execution role."""
    job = arns.processing_job(params["ProcessingJobName"])
    request_tags = {tag["Key"]: tag["Value"] for tag in params.get("Tags", [])}
    context: dict[str, ContextValue] = {f"aws:RequestTag/{k}": v for k, v in request_tags.items()}
    context["sagemaker:InstanceTypes"] = [params["ProcessingResources"]["ClusterConfig"]["InstanceType"]]
    context["sagemaker:MaxRuntimeInSeconds"] = str(params["StoppingCondition"]["MaxRuntimeInSeconds"])
    found = [Access("sagemaker:CreateProcessingJob", job, context)]
    if request_tags:
        found.append(Access("sagemaker:AddTags", job, {**context, "aws:TagKeys": sorted(request_tags)}))
    found.append(
        Access("iam:PassRole", params["RoleArn"], {"iam:PassedToService": "sagemaker.amazonaws.com"})
    )
    return found


_MAPPERS = {"s3": _s3_accesses, "dynamodb": _dynamodb_accesses, "sagemaker": _sagemaker_accesses}


def accesses(call: Call, arns: Arns, tags: Mapping[str, dict[str, str]] | None = None) -> list[Access]:
    """The authorisations AWS makes for `call` (tags: training job name -> its tags, for
    `aws:ResourceTag` conditions)."""
    mapper = _MAPPERS.get(call.service)
    if mapper is None:
        raise UnmappedCall(f"service {call.service} ({call.operation})")
    return mapper(call, arns, tags or {})


# --- recording -------------------------------------------------------------------------------------


class CallRecorder:
    """Records the AWS calls made while a handler runs (`with recorder.invoking("ApiFunction")`).

    Register it on the boto3 session the handlers' clients come from; calls made outside
    `invoking` (the test's own setup and checks) are not recorded. The handler's thread pools
    (parallel uploads) are attributed to the function that is running."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.job_tags: dict[str, dict[str, str]] = {}
        self._function: str | None = None
        self._lock = threading.Lock()

    def register(self, events: Any) -> None:
        events.register("provide-client-params", self._on_params, unique_id="segpipe-iam-params")
        events.register("after-call", self._on_result, unique_id="segpipe-iam-result")

    @contextmanager
    def invoking(self, function: str) -> Iterator[None]:
        previous, self._function = self._function, function
        try:
            yield
        finally:
            self._function = previous

    def _on_params(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        if service == "sagemaker" and model.name in {"CreateTrainingJob", "CreateProcessingJob"}:
            tags = {tag["Key"]: tag["Value"] for tag in params.get("Tags", [])}
            name = params.get("TrainingJobName") or params.get("ProcessingJobName") or ""
            self.job_tags[str(name).lower()] = tags
        if self._function is None:
            return
        call = Call(
            function=self._function,
            service=service,
            operation=model.name,
            params={key: value for key, value in params.items() if key != "Body"},
            presign=bool(context.get("is_presign_request")),
        )
        context["segpipe_iam_call"] = call
        with self._lock:
            self.calls.append(call)

    def _on_result(
        self, http_response: Any, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        call = context.get("segpipe_iam_call")
        if isinstance(call, Call):
            call.status = getattr(http_response, "status_code", None)
            call.error = parsed.get("Error", {}).get("Code") if call.status and call.status >= 300 else None


@dataclass(frozen=True)
class Finding:
    function: str
    call: str
    access: Access
    verdict: str

    def __str__(self) -> str:
        return f"{self.function}: {self.call} needs {self.access} -> {self.verdict} by template.yaml"


def check_calls(
    calls: Sequence[Call],
    policies: Mapping[str, Sequence[Statement]],
    arns: Arns,
    tags: Mapping[str, dict[str, str]] | None = None,
) -> list[Finding]:
    """Every access of every recorded call that the function's policy does not allow."""
    findings = []
    for call in calls:
        statements = policies[call.function]
        for access in accesses(call, arns, tags):
            verdict = decision(statements, access)
            if verdict != "allowed":
                findings.append(Finding(call.function, f"{call.service} {call.operation}", access, verdict))
    return findings


def actions_in_use(
    calls: Sequence[Call], arns: Arns, tags: Mapping[str, dict[str, str]] | None = None
) -> dict[str, list[str]]:
    """Per function, the sorted IAM actions its recorded calls needed."""
    found: dict[str, set[str]] = {}
    for call in calls:
        found.setdefault(call.function, set()).update(access.action for access in accesses(call, arns, tags))
    return {function: sorted(actions) for function, actions in sorted(found.items())}


__all__ = [
    "FORBIDDEN_ACTIONS",
    "Access",
    "Arns",
    "Call",
    "CallRecorder",
    "Finding",
    "Statement",
    "UnmappedCall",
    "actions_in_use",
    "allowed",
    "check_calls",
    "decision",
    "evaluate",
    "function_statements",
    "granted_actions",
    "role_statements",
    "wildcard",
]
