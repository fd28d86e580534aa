from . import roles as role_rules


def roles(request):
    user = request.user
    return {
        "user_is_admin": role_rules.is_admin(user),
        "user_is_compliance": role_rules.is_compliance(user),
        "user_sees_everything": role_rules.sees_everything(user),
    }
