from flask_smorest import Api

from kindstride.api import accounts, activities, challenges, fundraising, leaderboards, moderation
from kindstride.api.auth import BEARER_SCHEME
from kindstride.security import csrf


def init_api(app):
    app.config.update(
        API_TITLE="kindstride",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
    )
    api = Api(app, spec_kwargs={"components": {"securitySchemes": BEARER_SCHEME}})
    for blueprint in (accounts.blp, challenges.blp, activities.blp, leaderboards.blp, moderation.blp,
                      fundraising.blp):
        csrf.exempt(blueprint)  # token-authenticated: no cookies, so no cross-site forgery
        api.register_blueprint(blueprint)
    return api
