"""WTForms classes: they parse and say what is missing; the rules live in the services."""

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter your email address")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password")])


class SignupForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter your email address")])
    password = PasswordField(
        "Password",
        validators=[DataRequired("Choose a password")],
        description="At least 8 characters.",
    )
    confirm = PasswordField(
        "Confirm password",
        validators=[
            DataRequired("Type the password again"),
            EqualTo("password", message="Passwords do not match"),
        ],
    )


class ProjectForm(FlaskForm):
    name = StringField("Project name", validators=[DataRequired("Give the project a name")])


class ApiKeyForm(FlaskForm):
    name = StringField("Name", description="Only you see it. Say where the key is used.")
    project = SelectField("Project", description="The key can only act inside this project.")
