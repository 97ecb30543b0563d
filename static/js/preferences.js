// Preferences page: name the browser's time zone next to "In the time zone of this browser".

const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
if (zone) document.getElementById("browser-zone").textContent = zone;
