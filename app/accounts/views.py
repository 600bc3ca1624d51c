from __future__ import annotations

from typing import Any

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.forms import SignUpForm
from ops import ratelimit

LOGIN_LIMITS = [
    ratelimit.Limit("login.ip", ratelimit.ip_key),
    ratelimit.Limit("login.account", ratelimit.posted_username_key),
]


class LoginView(auth_views.LoginView):
    """Django's login, limited by failed attempts per client address and per account.

    Only failures are counted (a person who types the password right is never limited),
    and the limit is checked before the form authenticates, so a refused guess costs no
    password hashing."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refusal = ratelimit.check(request, LOGIN_LIMITS, increment=False)
        if refusal is not None:
            return ratelimit.too_many_requests(request, refusal, as_json=False)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        ratelimit.check(self.request, LOGIN_LIMITS, increment=True)
        return super().form_invalid(form)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
@ratelimit.limited(ratelimit.Limit("signup.ip", ratelimit.ip_key))
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("chat:home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            user = form.save()
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("chat:home")
        return render(request, "accounts/signup.html", {"form": form}, status=400)
    return render(request, "accounts/signup.html", {"form": form})
