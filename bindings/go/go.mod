module boxlite

go 1.19
