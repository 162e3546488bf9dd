# the real OAuth provider and a browser stand-in, shared with tests/oauth
from tests.oauth.conftest import browser, oauth_env  # noqa: F401
