// response_mode=form_post: hand the authorization answer to the application at once, as Entra's
// page does; the Continue button stays for browsers without scripts.
"use strict";
document.getElementById("form-post").submit();
