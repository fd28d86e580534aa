from django.views.debug import SafeExceptionReporterFilter

# Form and API fields that may carry an API key secret. Their values never reach an error page.
SECRET_FIELDS = {"secret", "found_secret", "api_secret"}


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    def get_post_parameters(self, request):
        params = super().get_post_parameters(request)
        if request is None:
            return params
        params = params.copy()
        for name in SECRET_FIELDS & set(params):
            params[name] = self.cleansed_substitute
        return params

    def get_traceback_frame_variables(self, request, tb_frame):
        cleansed = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if name in SECRET_FIELDS:
                value = self.cleansed_substitute
            cleansed.append((name, value))
        return cleansed
