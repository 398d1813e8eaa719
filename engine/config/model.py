"""The compiled configuration: frozen, typed objects that the runtime works with.

`engine.config.load_tenant` validates a tenant file (and the mapping it names) and compiles it
into a `Tenant`. Nothing after that point handles raw config dicts: expressions are compiled,
regexes are compiled, secrets are `Secret` objects that are resolved only when a run needs them.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from engine.backoff import RETRIES
from engine.config.secrets import Secret

if TYPE_CHECKING:
    from engine.expr import Expr

ENTITIES: tuple[str, ...] = ("buildings", "units", "users", "occupancies")
"""The portal's resources, in write order (deletes go in reverse)."""


@dataclass(frozen=True)
class CodeTable:
    name: str
    values: Mapping[str, Any]  # keys compared as strings after trim and lower-case
    default: Any = None


@dataclass(frozen=True)
class FilterRule:
    """One named exclusion rule. A source record that matches is not sent (counted per rule).

    kind decides which of the attributes is set:
      in / not_in: field, values (compared as trimmed strings, case-insensitively)
      flag:        field (truthy: 1, true, 'J', 'Y', 'X', 'ja', 'yes', 'true')
      regex:       field, pattern (re.search)
      range:       field, min, max (inclusive, numeric; None = open)
      expr:        expr (a boolean jmespath expression over the source record)
    """
    name: str
    reason: str
    kind: Literal["in", "not_in", "flag", "regex", "range", "expr"]
    field: str | None = None
    values: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None
    min: float | None = None
    max: float | None = None
    expr: "Expr | None" = None
    description: str | None = None
    severity: str | None = None         # a reason of the tenant's own: info or warning, as declared
    advice: str | None = None           # a reason of the tenant's own: what to do in the ERP, as declared


@dataclass(frozen=True)
class Paginator:
    type: Literal["none", "page_number", "offset", "cursor", "link_header"]
    page_param: str | None = None      # page_number: the page parameter (default "page")
    size_param: str | None = None      # page_number/offset: the page size parameter
    offset_param: str | None = None    # offset: the offset parameter
    cursor_param: str | None = None    # cursor: the request parameter carrying the cursor
    cursor_path: str | None = None     # cursor: jmespath into the response body for the next cursor
    start: int = 1                     # page_number: first page
    verify: bool | None = None         # read the pages a second time; None: page_number/offset do, link_header
                                       # does when its links count positions (engine.sources._readings)


@dataclass(frozen=True)
class EntityMapping:
    """How one portal resource is read from the source and mapped."""
    name: str                                  # one of ENTITIES
    fields: Mapping[str, "Expr"]               # portal field -> compiled expression
    key: tuple[str, ...]                       # source columns that identify the ERP record
    filters: tuple[FilterRule, ...] = ()
    query: str | None = None                   # sql sources: one SELECT
    endpoint: str | None = None                # api sources: path below base_url
    record_selector: str | None = None         # api sources: jmespath to the list of records
    paginator: Paginator | None = None         # api sources
    params: Mapping[str, Any] = field(default_factory=dict)  # bound query params / API params
    contract: "Expr | None" = None             # occupancies: the ERP contract (for partnerships)
    query_at: str | None = None                # sql sources: where the query is written (file:line)

    def source_names(self, known: bool = False) -> set[str] | None:
        """The source's names the mapping reads (columns of a query, or the top-level keys and
        dotted paths of an API's records): its key, fields, contract and filters; None where an
        expression's names are not knowable ('@', '*'), or with `known` the names of the others
        (each of which a row must have: binding an expression to a query's columns fails without)."""
        names = set(self.key) | {f.field for f in self.filters if f.field}
        for expr in [*self.fields.values(), self.contract, *(f.expr for f in self.filters)]:
            if expr is None or (known and expr.columns is None):
                continue
            if expr.columns is None:
                return None
            names |= set(expr.columns)
        return names


@dataclass(frozen=True)
class SqlServer:
    """Structured SQL Server settings; turned into an ODBC connection string by the engine."""
    host: str
    database: str
    username: str
    password: Secret
    port: int = 1433
    driver: str = "ODBC Driver 18 for SQL Server"
    encrypt: Literal["yes", "no", "strict"] = "yes"
    trust_server_certificate: bool = False
    host_name_in_certificate: str | None = None
    login_timeout: int = 15          # seconds
    application_intent: Literal["ReadOnly", "ReadWrite"] = "ReadOnly"
    tds_version: str | None = None   # FreeTDS only, e.g. "7.4"


@dataclass(frozen=True)
class SqlSource:
    type: Literal["sql"]
    url: Secret | None = None        # a SQLAlchemy URL (may reference secrets)
    server: SqlServer | None = None  # or structured SQL Server settings
    batch_size: int = 5000
    query_timeout: int = 600         # seconds
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiAuth:
    type: Literal["api_key", "bearer", "oauth2_client_credentials"]
    header: str = "X-API-Key"        # api_key
    key: Secret | None = None        # api_key
    token: Secret | None = None      # bearer
    token_url: str | None = None     # oauth2
    client_id: str | None = None
    client_secret: Secret | None = None
    scope: str | None = None


@dataclass(frozen=True)
class ApiSource:
    type: Literal["api"]
    base_url: str
    auth: ApiAuth
    page_size: int = 500
    timeout: float = 30.0
    rate_limit: float | None = None  # requests per second
    params: Mapping[str, Any] = field(default_factory=dict)
    max_retries: int = RETRIES      # engine.backoff: a page (or token request) has max_retries + 1 attempts


@dataclass(frozen=True)
class EmailDedup:
    policy: Literal["first_wins", "none_wins", "merge_partnership", "fail"] = "first_wins"
    fallback: Literal["first_wins", "none_wins", "fail"] = "first_wins"  # merge_partnership only
    order: tuple[str, ...] = ("role", "start_date", "external_id")  # '-' prefix: descending
    joiner: str = " und "            # merged display name: "Hans und Grete Müller"


@dataclass(frozen=True)
class PhoneDedup:
    unique: bool = False             # same policy for phone numbers (first_wins by order)


@dataclass(frozen=True)
class ContractWindow:
    reference_date: dt.date | None = None   # None: the run's date
    future_days: int = 30
    grace_days: int = 0


@dataclass(frozen=True)
class Rules:
    long_names: Literal["truncate", "reject"] = "truncate"
    users_without_occupancy: Literal["skip", "send"] = "skip"


@dataclass(frozen=True)
class Deletion:
    max_count: int = 100             # per entity and run
    max_share: float = 0.10          # of the managed records of that entity
    min_source_ratio: float = 0.5    # rows extracted vs the last successful run


@dataclass(frozen=True)
class LocalTarget:
    type: Literal["local"]
    path: Path


@dataclass(frozen=True)
class IdwellTarget:
    type: Literal["idwell"]
    base_url: str
    token: Secret
    batch_size: int = 500
    concurrency: int = 4
    rate_limit: float | None = None  # requests per second
    timeout: float = 30.0
    max_retries: int = RETRIES      # engine.backoff


@dataclass(frozen=True)
class Schedule:
    cron: str
    timezone: str = "Europe/Berlin"
    window_start: dt.time | None = None
    window_end: dt.time | None = None


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    path: Path                                  # the tenant file
    mapping: str                                # the mapping profile's name
    source: SqlSource | ApiSource
    entities: Mapping[str, EntityMapping]       # keyed by ENTITIES, in write order
    code_tables: Mapping[str, CodeTable]
    email_dedup: EmailDedup = EmailDedup()
    phone_dedup: PhoneDedup = PhoneDedup()
    window: ContractWindow = ContractWindow()
    rules: Rules = Rules()
    deletion: Deletion = Deletion()
    target: LocalTarget | IdwellTarget | None = None
    schedule: Schedule | None = None
    state_url: str | None = None                # None: the default state store
