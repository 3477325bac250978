import pytest

from tunelab import spaces, trainers


@pytest.fixture(scope="session")
def small_trainer():
    """MNIST-1D with 256 training examples, 2 epochs: a trial takes ~0.1 s."""
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2, seed=0)


def small_space():
    return spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=1)


@pytest.fixture(scope="session")
def postgres():
    """The base URL of a throw-away PostgreSQL server (one per test session); skipped where none is installed."""
    import pg_server

    if pg_server.server_bin() is None:
        pytest.skip("PostgreSQL is not installed here (Debian: apt-get install postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'tunelab[postgres]'")
    with pg_server.postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty study database: an SQLite file, and a database on a PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    import pg_server

    return pg_server.new_database(request.getfixturevalue("postgres"))
