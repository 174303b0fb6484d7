"""Deterministic, realistic seed data: the same rows, ids and versions on every machine.

Each environment gets users, a business unit, currencies, accounts with contacts, leads, opportunities,
cases, products, orders, invoices and custom projects, owned by its salespeople and administrator so that
record-level security has something to hide. `extra_accounts` adds plain accounts in bulk for benchmarks.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from ._catalog import Catalog, Table
from ._directory import BUSINESS_UNIT_ID, PRINCIPALS, USD_CURRENCY_ID, EnvironmentSpec, User
from ._expression import format_datetime
from ._store import Store, StoredRow, is_polymorphic, target_column

EUR_CURRENCY_ID: Final = uuid.UUID("4e1f2a3b-5c6d-4e7f-8a9b-0c1d2e3f4a51")
_EPOCH: Final = datetime(2024, 1, 2, 9, 0, tzinfo=UTC)

COMPANIES: Final = (
    "Contoso Ltd",
    "Fabrikam Inc",
    "Adventure Works Cycles",
    "Northwind Traders",
    "Tailspin Toys",
    "Wide World Importers",
    "Litware Inc",
    "Proseware Inc",
    "Coho Winery",
    "Alpine Ski House",
    "Blue Yonder Airlines",
    "City Power & Light",
    "Fourth Coffee",
    "Graphic Design Institute",
    "Humongous Insurance",
    "Lucerne Publishing",
    "Margie's Travel",
    "Southridge Video",
    "Trey Research",
    "Woodgrove Bank",
    "A. Datum Corporation",
    "Consolidated Messenger",
    "Wingtip Toys",
    "Relecloud",
    "VanArsdel Ltd",
    "Munson's Pickles and Preserves Farm",
    "Best For You Organics Company",
    "Nod Publishers",
    "School of Fine Art",
    "Bellows College",
)
CITIES: Final = (
    ("Seattle", "United States"),
    ("Redmond", "United States"),
    ("London", "United Kingdom"),
    ("Berlin", "Germany"),
    ("Paris", "France"),
    ("Zürich", "Switzerland"),
    ("São Paulo", "Brazil"),
    ("Tokyo", "Japan"),
    ("Sydney", "Australia"),
    ("Toronto", "Canada"),
)
FIRST_NAMES: Final = (
    "Maria", "James", "Yvonne", "Rene", "Paul", "Susanna", "Nancy", "Sidney", "Scott", "Thomas", "Jim", "Patrick",
    "Anne", "Björn", "Chloé", "Dmitri", "Aiko", "Olu", "Siobhán", "Zoë",
)  # fmt: skip
LAST_NAMES: Final = (
    "Campbell", "Chen", "McKay", "Valdes", "Cannon", "Stern", "Anderson", "Higa", "Konersmann", "Andersen",
    "Glynn", "O'Neil", "Müller", "Núñez", "Tanaka", "Okafor", "Dubois", "Kowalski", "Ng", "Smith",
)  # fmt: skip
PRODUCTS: Final = (
    ("Surface Laptop 7", 1299.0),
    ("Surface Pro 11", 999.0),
    ("Contoso Coffee Maker", 89.5),
    ("Ergonomic Keyboard", 59.99),
    ('4K Monitor 27"', 429.0),
    ("Standing Desk", 649.0),
    ("Noise-Cancelling Headset", 199.0),
    ("Wireless Mouse", 29.99),
    ("Docking Station", 249.0),
    ("Conference Camera", 899.0),
    ("Support Plan (1 year)", 1200.0),
    ("Onboarding Workshop", 2500.0),
)
TOPICS: Final = (
    "New office fit-out",
    "Laptop refresh for sales team",
    "Annual support renewal",
    "Conference room upgrade",
    "Coffee machines for all floors",
    "Remote work bundle",
    "Training for 50 users",
    "Data migration project",
)


class _Seeder:
    def __init__(self, store: Store, environment: EnvironmentSpec, stream: str = "seed") -> None:
        self.store = store
        self.catalog: Catalog = store.catalog
        self.environment = environment
        self.random = random.Random(f"dynamics-mcp/{environment.name}/{stream}")
        self.members = [user for user in PRINCIPALS if user.role_in(environment.name)]
        self.owners = [
            user
            for user in self.members
            if user.role_in(environment.name) != "Sales Reader" and user.application_id is None and user.owns_seed_data
        ]
        self.version = 1000

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def moment(self, days: int = 700) -> datetime:
        return _EPOCH + timedelta(days=self.random.randrange(days), minutes=self.random.randrange(600))

    def row(
        self, table: Table, values: StoredRow, *, owner: User | None = None, row_id: str | None = None
    ) -> StoredRow:
        """A complete row: system columns filled as the platform fills them on create."""
        self.version += 1
        created = self.moment()
        owner = owner or self.random.choice(self.owners)
        row: StoredRow = dict.fromkeys(self._column_names(table))
        row[table.primary_id] = row_id or self.new_id()
        row.update(
            createdon=format_datetime(created),
            modifiedon=format_datetime(created + timedelta(days=self.random.randrange(30))),
            createdby=str(owner.system_user_id),
            modifiedby=str(owner.system_user_id),
            versionnumber=self.version,
            statecode=0,
            statuscode=1,
        )
        if table.is_user_owned:
            row.update(
                ownerid=str(owner.system_user_id),
                ownerid__target="systemuser",
                owninguser=str(owner.system_user_id),
                owningbusinessunit=str(BUSINESS_UNIT_ID),
            )
        if "transactioncurrencyid" in table.columns and table.primary_id != "transactioncurrencyid":
            row["transactioncurrencyid"] = str(USD_CURRENCY_ID)
        if "exchangerate" in table.columns and table.logical_name != "transactioncurrency":
            row["exchangerate"] = 1.0
        row.update(values)
        for name, value in values.items():
            if f"{name}_base" in row and isinstance(value, float):
                row[f"{name}_base"] = value
        return row

    def _column_names(self, table: Table) -> list[str]:
        names = []
        for column in table.stored_columns():
            names.append(column.logical_name)
            if is_polymorphic(column):
                names.append(target_column(column))
        return names

    def insert(self, logical_name: str, rows: Sequence[StoredRow]) -> None:
        table = self.catalog.tables[logical_name]
        self.store.insert_many(table, list(rows))

    def seed(self) -> None:
        tables = self.catalog.tables
        administrator = self.members[0]
        self.insert(
            "businessunit",
            [self.row(tables["businessunit"], {"name": "Contoso"}, row_id=str(BUSINESS_UNIT_ID))],
        )
        self.insert(
            "transactioncurrency",
            [
                self.row(
                    tables["transactioncurrency"],
                    {
                        "currencyname": name,
                        "isocurrencycode": code,
                        "currencysymbol": symbol,
                        "exchangerate": rate,
                    },
                    owner=administrator,
                    row_id=str(currency_id),
                )
                for currency_id, name, code, symbol, rate in (
                    (USD_CURRENCY_ID, "US Dollar", "USD", "$", 1.0),
                    (EUR_CURRENCY_ID, "Euro", "EUR", "€", 0.92),
                )
            ],
        )
        self.insert(
            "systemuser",
            [
                self.row(
                    tables["systemuser"],
                    {
                        "fullname": user.full_name,
                        "domainname": user.upn,
                        "internalemailaddress": user.upn,
                        "azureactivedirectoryobjectid": str(user.object_id),
                        "businessunitid": str(BUSINESS_UNIT_ID),
                        "isdisabled": 0,
                        "title": user.role_in(self.environment.name),
                    },
                    owner=administrator,
                    row_id=str(user.system_user_id),
                )
                for user in self.members
            ],
        )
        self.seed_sales(self.environment.rows_per_table)

    def seed_sales(self, count: int) -> None:
        tables = self.catalog.tables
        accounts, contacts = [], []
        for index in range(count):
            company = COMPANIES[index % len(COMPANIES)]
            city, country = CITIES[index % len(CITIES)]
            name = company if index < len(COMPANIES) else f"{company} ({city} {index // len(COMPANIES)})"
            owner = self.owners[index % len(self.owners)]
            account = self.row(
                tables["account"],
                {
                    "name": name,
                    "accountnumber": f"A-{1001 + index}",
                    "address1_city": city,
                    "address1_country": country,
                    "telephone1": f"+1 425 555 {index:04d}",
                    "emailaddress1": f"info{index}@{company.split()[0].lower().strip('.,')}.example",
                    "websiteurl": f"https://www.{company.split()[0].lower().strip('.,')}.example",
                    "industrycode": self.random.randint(1, 30),
                    "customertypecode": self.random.choice([3, 3, 3, 5, 8, 9]),
                    "accountcategorycode": self.random.choice([1, 2]),
                    "revenue": float(self.random.randrange(50, 50000) * 1000),
                    "numberofemployees": self.random.randrange(5, 20000),
                    "creditonhold": int(self.random.random() < 0.1),
                    "creditlimit": float(self.random.randrange(10, 500) * 1000),
                    "description": f"{name} is a customer in {city}.",
                    "statecode": 0 if index % 11 else 1,
                    "statuscode": 1 if index % 11 else 2,
                },
                owner=owner,
            )
            accounts.append(account)
            for number in range(2):
                first = FIRST_NAMES[(index * 2 + number) % len(FIRST_NAMES)]
                last = LAST_NAMES[(index * 3 + number) % len(LAST_NAMES)]
                contact = self.row(
                    tables["contact"],
                    {
                        "firstname": first,
                        "lastname": last,
                        "fullname": f"{first} {last}",
                        "jobtitle": self.random.choice(["Purchasing Manager", "CEO", "IT Director", "Office Manager"]),
                        "emailaddress1": f"{first.lower()}.{index}.{number}@example.com",
                        "telephone1": f"+1 206 555 {index:02d}{number:02d}",
                        "address1_city": city,
                        "address1_country": country,
                        "parentcustomerid": account["accountid"],
                        "parentcustomerid__target": "account",
                        "preferredcontactmethodcode": self.random.randint(1, 5),
                        "birthdate": (_EPOCH - timedelta(days=self.random.randrange(8000, 22000))).date().isoformat(),
                    },
                    owner=owner,
                )
                contacts.append(contact)
            account["primarycontactid"] = contacts[-2]["contactid"]
        self.insert("account", accounts)
        self.insert("contact", contacts)
        self.seed_pipeline(accounts, contacts)

    def seed_pipeline(self, accounts: list[StoredRow], contacts: list[StoredRow]) -> None:
        tables = self.catalog.tables
        owners_by_id = {str(user.system_user_id): user for user in self.owners}
        leads, opportunities, cases, orders, invoices, projects = [], [], [], [], [], []
        for index, account in enumerate(accounts):
            owner = owners_by_id[str(account["owninguser"])]
            contact = contacts[index * 2]
            topic = TOPICS[index % len(TOPICS)]
            leads.append(
                self.row(
                    tables["lead"],
                    {
                        "subject": f"{topic} ({account['name']})",
                        "firstname": contact["firstname"],
                        "lastname": contact["lastname"],
                        "fullname": contact["fullname"],
                        "companyname": account["name"],
                        "emailaddress1": f"lead{index}@example.org",
                        "leadsourcecode": self.random.randint(1, 10),
                        "leadqualitycode": self.random.randint(1, 3),
                        "estimatedamount": float(self.random.randrange(1, 200) * 500),
                        "parentaccountid": account["accountid"],
                        "statecode": 0,
                        "statuscode": self.random.choice([1, 2]),
                    },
                    owner=owner,
                )
            )
            state = self.random.choice([0, 0, 0, 1, 2])
            opportunity = self.row(
                tables["opportunity"],
                {
                    "name": topic,
                    "customerid": account["accountid"],
                    "customerid__target": "account",
                    "parentaccountid": account["accountid"],
                    "parentcontactid": contact["contactid"],
                    "estimatedvalue": float(self.random.randrange(5, 400) * 250),
                    "estimatedclosedate": self.moment(900).date().isoformat(),
                    "closeprobability": self.random.randrange(10, 95, 5),
                    "opportunityratingcode": self.random.randint(1, 3),
                    "salesstage": self.random.randint(0, 3),
                    "statecode": state,
                    "statuscode": {0: 1, 1: 3, 2: 4}[state],
                },
                owner=owner,
            )
            opportunities.append(opportunity)
            cases.append(
                self.row(
                    tables["incident"],
                    {
                        "title": self.random.choice(
                            ["Printer not working", "Invoice question", "Delivery delayed", "Login problem"]
                        ),
                        "ticketnumber": f"CAS-{10000 + index:05d}",
                        "customerid": account["accountid"],
                        "customerid__target": "account",
                        "prioritycode": self.random.randint(1, 3),
                        "caseorigincode": self.random.choice([1, 2, 3]),
                        "casetypecode": self.random.randint(1, 3),
                    },
                    owner=owner,
                )
            )
            if index % 2 == 0:
                order = self.row(
                    tables["salesorder"],
                    {
                        "name": f"Order for {topic}",
                        "ordernumber": f"ORD-{20000 + index}",
                        "customerid": account["accountid"],
                        "customerid__target": "account",
                        "opportunityid": opportunity["opportunityid"],
                        "totalamount": opportunity["estimatedvalue"],
                        "requestdeliveryby": self.moment(900).date().isoformat(),
                    },
                    owner=owner,
                )
                orders.append(order)
                if index % 4 == 0:
                    invoices.append(
                        self.row(
                            tables["invoice"],
                            {
                                "name": f"Invoice for {topic}",
                                "invoicenumber": f"INV-{30000 + index}",
                                "customerid": account["accountid"],
                                "customerid__target": "account",
                                "salesorderid": order["salesorderid"],
                                "totalamount": order["totalamount"],
                                "duedate": self.moment(900).date().isoformat(),
                            },
                            owner=owner,
                        )
                    )
            if index % 3 == 0:
                projects.append(
                    self.row(
                        tables["cr8a1_project"],
                        {
                            "cr8a1_name": f"{account['name']} rollout",
                            "cr8a1_code": f"PRJ-{index:04d}",
                            "cr8a1_accountid": account["accountid"],
                            "cr8a1_budget": float(self.random.randrange(10, 500) * 1000),
                            "cr8a1_startdate": self.moment().date().isoformat(),
                            "cr8a1_phase": self.random.choice([100000000, 100000001, 100000002, 100000003]),
                            "cr8a1_ishighpriority": int(self.random.random() < 0.3),
                            "cr8a1_completion": float(self.random.randrange(0, 101)),
                            "cr8a1_headcount": self.random.randrange(1, 40),
                        },
                        owner=owner,
                    )
                )
        products = [
            self.row(
                tables["product"],
                {
                    "name": name,
                    "productnumber": f"P-{100 + index}",
                    "price": price,
                    "standardcost": round(price * 0.6, 2),
                    "quantityonhand": float(self.random.randrange(0, 500)),
                },
                owner=self.members[0],
            )
            for index, (name, price) in enumerate(PRODUCTS)
        ]
        for logical_name, rows in (
            ("lead", leads),
            ("opportunity", opportunities),
            ("incident", cases),
            ("salesorder", orders),
            ("invoice", invoices),
            ("cr8a1_project", projects),
            ("product", products),
        ):
            self.insert(logical_name, rows)


def seed(store: Store, environment: EnvironmentSpec) -> None:
    """Fill an empty store with the environment's rows."""
    with store.transaction():
        seeder = _Seeder(store, environment)
        seeder.seed()
        store.connection.execute("UPDATE _sandbox SET value = ? WHERE name = 'rowversion'", (seeder.version,))


def add_accounts(store: Store, environment: EnvironmentSpec, count: int) -> None:
    """Add `count` plain accounts in one transaction (the large-data option for benchmarks)."""
    table = store.catalog.tables["account"]
    with store.transaction():
        seeder = _Seeder(store, environment, stream=f"bulk-{store.count(table)}")
        seeder.version = store.next_version()
        rows = []
        for index in range(count):
            city, country = CITIES[index % len(CITIES)]
            rows.append(
                seeder.row(
                    table,
                    {
                        "name": f"Bulk Account {index:06d}",
                        "accountnumber": f"B-{index:06d}",
                        "address1_city": city,
                        "address1_country": country,
                        "revenue": float(index % 1000 * 1000),
                        "numberofemployees": index % 5000,
                        "industrycode": index % 30 + 1,
                    },
                    owner=seeder.owners[index % len(seeder.owners)],
                )
            )
            if len(rows) == 5000:
                store.insert_many(table, rows)
                rows = []
        store.insert_many(table, rows)
        store.connection.execute("UPDATE _sandbox SET value = ? WHERE name = 'rowversion'", (seeder.version,))
