-- Reserved for another branch's migration (the lead replaces this file at merge).
SELECT 1;
